//! `crop-check`: does detection + the app's crop give the model what dataset crops gave it?

use std::path::PathBuf;

use anyhow::Result;

use crate::evaluate::shipped_model_dir;

/// Check that detection + aligned crop gives the model what dataset crops gave it (dataset
/// crops pasted into larger frames); --tune picks the crop margin on training images first.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model folder; default: the model the web app ships.
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long)]
    pub data: PathBuf,
    /// Images to use (a seeded sample).
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    /// Choose the margin on the training split and write it into the model's manifest.
    #[arg(long)]
    pub tune: bool,
    /// Also move the faces of these photos (a folder) into larger frames and compare.
    #[arg(long)]
    pub photos: Option<PathBuf>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value = "reports/crop_check.json")]
    pub report: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let model = a.model.unwrap_or_else(shipped_model_dir);
    crate::cropcheck::run(&model, &a.data, a.limit, a.tune, a.photos.as_deref(), a.seed, &a.report).map(|_| ())
}
