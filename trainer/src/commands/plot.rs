//! `plot`: the report plots drawn again from the files they show, without the data behind them.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::train::EpochStats;

/// Draw plots again: a report's confusion matrix (`NAME.confusion.png` beside `NAME.json`), and
/// with --model a model folder's learning curves (with those of the model it was fine-tuned from).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Report files (JSON, as `evaluate` and `cv` write them).
    pub reports: Vec<PathBuf>,
    /// A model folder whose learning curves to draw (from its manifest's history).
    #[arg(long, requires = "curves")]
    pub model: Option<PathBuf>,
    /// Where to write the learning curves of --model.
    #[arg(long, requires = "model")]
    pub curves: Option<PathBuf>,
}

fn read_json(path: &std::path::Path) -> Result<serde_json::Value> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", path.display()))
}

pub fn run(a: Args) -> Result<()> {
    anyhow::ensure!(!a.reports.is_empty() || a.model.is_some(), "nothing to draw: give report files or --model");
    for path in &a.reports {
        let report: mien::metrics::Report = serde_json::from_value(read_json(path)?)
            .with_context(|| format!("{} is not an evaluation report", path.display()))?;
        let png = path.with_extension("confusion.png");
        crate::plots::confusion_png(&png, &report.labels, &report.confusion_matrix)?;
        eprintln!("{}", png.display());
    }
    if let (Some(model), Some(png)) = (&a.model, &a.curves) {
        let manifest = read_json(&model.join("manifest.json"))?;
        let history = |key: &str| -> Result<Vec<EpochStats>> {
            Ok(serde_json::from_value(manifest["info"][key].clone()).unwrap_or_default())
        };
        let (earlier, history) = (history("init_history")?, history("history")?);
        anyhow::ensure!(!history.is_empty(), "{}/manifest.json records no training history", model.display());
        crate::plots::curves_png(png, &earlier, &history)?;
        eprintln!("{}", png.display());
    }
    Ok(())
}
