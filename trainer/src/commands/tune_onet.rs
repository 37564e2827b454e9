//! `tune-onet`: MTCNN's O-Net fine-tuned on faces framed as people bring them (see
//! [`crate::onet`]), as a model folder the detector's second opinion loads.

use std::path::PathBuf;

use anyhow::Result;

use crate::onet::{tune_onet, OnetTuneConfig};

/// Fine-tune MTCNN's O-Net on FER2013 training faces in frames and as they are, for the
/// detector's second opinion where the cascade finds no face.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// FER2013 (its training images only are read).
    #[arg(long)]
    pub data: PathBuf,
    /// The model folder to write (`onet.safetensors`, `manifest.json`).
    #[arg(long)]
    pub out: PathBuf,
    /// Training images to use, after the held-out ones.
    #[arg(long, default_value_t = 10_000)]
    pub images: usize,
    /// The first images of the detection examples' sample (seed 7), never trained on.
    #[arg(long, default_value_t = 2_000)]
    pub held_out: usize,
    #[arg(long, default_value_t = 4)]
    pub epochs: usize,
    #[arg(long, default_value_t = 0.0002)]
    pub lr: f64,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share of the images given as they are (48–160 px, no frame around them).
    #[arg(long, default_value_t = 0.25)]
    pub bare_share: f32,
    /// Leave out the non-faces made of each image (its blocks shuffled, or upside down).
    #[arg(long)]
    pub no_unfaced: bool,
}

pub fn run(a: Args) -> Result<()> {
    let cfg = OnetTuneConfig {
        images: a.images,
        held_out: a.held_out,
        epochs: a.epochs,
        lr: a.lr,
        batch: a.batch_size,
        seed: a.seed,
        bare_share: a.bare_share,
        unfaced: !a.no_unfaced,
    };
    let reproduce = format!(
        "cargo xtask trainer tune-onet --data {} --out {} --images {} --held-out {} --epochs {} --lr {} --batch-size {} --seed {} --bare-share {}{}",
        a.data.display(),
        a.out.display(),
        a.images,
        a.held_out,
        a.epochs,
        a.lr,
        a.batch_size,
        a.seed,
        a.bare_share,
        if a.no_unfaced { " --no-unfaced" } else { "" }
    );
    tune_onet(&a.data, &a.out, &cfg, reproduce)
}
