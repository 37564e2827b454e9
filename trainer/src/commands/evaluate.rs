//! `evaluate`: a model folder scored on a dataset's test split, or on its own run's validation
//! split.

use std::path::PathBuf;

use anyhow::Result;

use crate::evaluate::{evaluate_model, evaluate_on_validation, Evaluation, TestSplit};
use crate::ferplus::FerPlusLabels;

/// Evaluate a saved model on a dataset's test split (PublicTest where the dataset has one;
/// every image of a dataset without a test split, and says so).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model folder (classifier.safetensors + manifest.json); default: the model the web app
    /// ships. With --validation it may be given more than once: the mean of the models'
    /// probabilities is scored (an ensemble, such as a distillation run's teachers).
    #[arg(long)]
    pub model: Vec<PathBuf>,
    /// Dataset folder or CSV, in any supported layout.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value = "reports/evaluate.json")]
    pub report: PathBuf,
    /// Also record the accuracy in the model's manifest (its model card).
    #[arg(long)]
    pub record: bool,
    /// Score on the validation split the model's own training run held out (rebuilt from its
    /// manifest's train_config), not the test split: for choosing between models, so that
    /// PublicTest never chooses.
    #[arg(long, conflicts_with_all = ["record", "split"])]
    pub validation: bool,
    /// With --validation: score the crops the app cuts of the validation images (as `train
    /// --app-crops` trains on them, with the first model's crop convention), not the dataset's.
    /// A model trained that way is scored so without it.
    #[arg(long, requires = "validation")]
    pub app_crops: bool,
    /// The test split to score (default: public where the dataset has it, else private, else all).
    #[arg(long, value_enum)]
    pub split: Option<TestSplit>,
    /// A labels-override CSV (`id,label` lines) applied to the dataset's labels.
    #[arg(long)]
    pub labels: Option<String>,
    #[command(flatten)]
    pub ferplus: Option<FerPlusLabels>,
}

pub fn run(a: Args) -> Result<()> {
    if a.validation {
        anyhow::ensure!(
            a.labels.is_none(),
            "--validation scores with the labels the model trained on (its train_config); leave out --labels"
        );
        return evaluate_on_validation(&a.model, &a.data, &a.report, a.ferplus.is_some(), a.app_crops);
    }
    // A test split chooses nothing: an ensemble is a candidate (of teachers), not a model the
    // app can load.
    anyhow::ensure!(
        a.model.len() <= 1,
        "--model is given {} times: an ensemble of models is scored on validation only (add --validation)",
        a.model.len()
    );
    evaluate_model(Evaluation {
        model: a.model.first().map(PathBuf::as_path),
        data: &a.data,
        report: &a.report,
        record: a.record,
        ferplus: a.ferplus.as_ref(),
        labels: a.labels.as_deref(),
        split: a.split,
    })
}
