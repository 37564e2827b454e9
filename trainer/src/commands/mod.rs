//! The subcommands of `mien-trainer`, one file each: its options (clap) and its entry point.

pub mod average;
pub mod bench_detect;
pub mod crop_check;
pub mod cv;
pub mod detect;
pub mod evaluate;
pub mod export;
pub mod plot;
pub mod prune;
pub mod quantize;
pub mod results;
pub mod train;
pub mod tune;
pub mod tune_onet;

/// A training run to read back: the dataset it trained on and its checkpoints folder.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The dataset the run trained on (its labels, composition and split are rebuilt from it).
    #[arg(long)]
    pub data: std::path::PathBuf,
    /// The run's checkpoints folder (`<train --out>/checkpoints`).
    #[arg(long)]
    pub checkpoints: std::path::PathBuf,
}
