//! `export`: a model folder from a run's best checkpoint.

use std::path::{Path, PathBuf};

use anyhow::Result;
use mien::burn::prelude::Device;

use crate::examples::open_for_run;
use crate::lineage::{lineage, TRAINER};
use crate::model_card::write_model;

/// Write a model folder from the best checkpoint of a training run (finished or not).
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub run: super::RunArgs,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    export_model(&a.run.data, &a.run.checkpoints, &a.out)
}

/// Writes a model folder from the best checkpoint of a (possibly unfinished) training run.
fn export_model(data: &Path, checkpoints: &Path, out: &Path) -> Result<()> {
    let (cfg, num_classes, history, best) = crate::train::read_checkpoint(checkpoints)?;
    let dataset = open_for_run(data, &cfg)?;
    let labels = dataset.labels();
    anyhow::ensure!(
        labels.len() == num_classes,
        "{} has {} labels but the checkpoint has {num_classes} outputs",
        data.display(),
        labels.len()
    );
    let net = crate::train::load_weights(&best, &cfg, num_classes, &Device::flex())?;
    let train_images =
        (dataset.samples.iter().filter(|s| s.usage.as_deref().is_none_or(|u| u == "Training")).count() * 9) / 10;
    let run_dir = checkpoints.parent().unwrap_or(checkpoints);
    let lineage = lineage(&cfg, checkpoints, false)?;
    let png = run_dir.join("learning_curves.png");
    crate::plots::curves_png(&png, &lineage.init_history, &history)?;
    eprintln!("learning curves written to {}", png.display());
    let reproduce = format!(
        "{} && {TRAINER} export --data {} --checkpoints {} --out {}",
        lineage.reproduce(&dataset.root, &cfg, run_dir),
        data.display(),
        checkpoints.display(),
        out.display()
    );
    write_model(out, &net, &cfg, &labels, &history, &lineage.init_history, &dataset, train_images, reproduce)
}
