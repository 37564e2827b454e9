//! `prune`: a run's checkpoints folder without the epochs kept for `average`.

use std::path::PathBuf;

use anyhow::Result;

/// Remove the epochs a run kept with --keep-epochs, leaving what --resume and export need (the
/// last checkpoint and the best epoch's weights).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run's checkpoints folder (`<train --out>/checkpoints`).
    #[arg(long)]
    pub checkpoints: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let n = crate::train::prune_checkpoints(&a.checkpoints)?;
    eprintln!("removed {n} files from {}", a.checkpoints.display());
    Ok(())
}
