//! `tune`: random search over training settings on validation folds of the training data.

use std::path::PathBuf;

use anyhow::Result;

use crate::train::TrainConfig;

/// Random search over training settings, scored on subject-grouped validation folds of the
/// training data only; writes a leaderboard (resumable with the same seed).
#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value_t = 12)]
    pub trials: usize,
    /// Validation folds per trial.
    #[arg(long, default_value_t = 3)]
    pub folds: usize,
    #[arg(long, default_value = "reports/tune.json")]
    pub leaderboard: PathBuf,
    #[command(flatten)]
    pub train: TrainConfig,
}

pub fn run(a: Args) -> Result<()> {
    crate::tune::run(&a.data, a.trials, a.folds, &a.train, &a.leaderboard)
}
