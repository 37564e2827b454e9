//! `train`: a model folder from a dataset.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mien::classify::ModelManifest;
use mien::Emotion;

use crate::evaluate::train_config_of;
use crate::examples::{training_split, TrainingSplit};
use crate::lineage::lineage;
use crate::model_card::write_model;
use crate::train::{train, Checkpoints, TrainConfig};

/// Train a model and write it (classifier.safetensors + manifest.json) to a folder.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Dataset folder or CSV, in any supported layout.
    #[arg(long)]
    pub data: PathBuf,
    /// Model folder to write; checkpoints go in its checkpoints/ subfolder.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue from the last checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// Keep every epoch's weights in the checkpoints folder (1.3 MB each at width 1.25), for
    /// `average`.
    #[arg(long)]
    pub keep_epochs: bool,
    #[command(flatten)]
    pub train: TrainConfig,
}

pub fn run(a: Args) -> Result<()> {
    train_model(&a.data, &a.train, &a.out, a.resume, a.keep_epochs)
}

/// Trains on a dataset (its own training split if it has one, else all of it minus a
/// subject-disjoint validation part) and writes a model folder. With `keep_epochs` every epoch's
/// weights stay in the checkpoints folder, for `average`.
pub fn train_model(data: &Path, cfg: &TrainConfig, out: &Path, resume: bool, keep_epochs: bool) -> Result<()> {
    let cfg = &with_app_crop(cfg.clone())?;
    let TrainingSplit { dataset, train: tr, val, labels } = training_split(data, cfg)?;
    if let (true, Some(init)) = (cfg.keep_head, &cfg.init) {
        let manifest = read_manifest(Path::new(init))?;
        anyhow::ensure!(
            manifest.labels == labels,
            "--keep-head: {init} predicts {:?}, this run's labels are {:?} (use a fresh head: leave out --keep-head)",
            manifest.labels,
            labels
        );
    }
    if let Some(d) = &cfg.distill {
        d.teachers.iter().try_for_each(|t| check_teacher(Path::new(t), cfg, &labels))?;
    }
    eprintln!("training on {} images, validating on {}", tr.len(), val.len());
    std::fs::create_dir_all(out)?;
    let checkpoints = out.join("checkpoints");
    let lineage = lineage(cfg, &checkpoints, !resume)?;
    let keep = Checkpoints { dir: checkpoints.clone(), keep_epochs };
    let trained = train(&tr, &val, labels.len(), cfg, Some(&keep), resume, false)?;
    let mut reproduce = lineage.reproduce(&dataset.root, cfg, out);
    if keep_epochs {
        reproduce += " --keep-epochs";
    }
    crate::plots::curves_png(&out.join("learning_curves.png"), &lineage.init_history, &trained.history)?;
    write_model(out, &trained.net, cfg, &labels, &trained.history, &lineage.init_history, &dataset, tr.len(), reproduce)
}

/// Resolves the crop convention of `--app-crops`: the `--init` model's, else the shipped model's.
fn with_app_crop(mut cfg: TrainConfig) -> Result<TrainConfig> {
    if cfg.app_crops && cfg.app_crop.is_none() {
        let dir = cfg.init.as_ref().map(PathBuf::from).unwrap_or_else(crate::evaluate::shipped_model_dir);
        let manifest = read_manifest(&dir)?;
        anyhow::ensure!(
            manifest.crop.size == cfg.input_size,
            "--app-crops: {} crops {}×{}, this run trains on {}×{}",
            dir.display(),
            manifest.crop.size,
            manifest.crop.size,
            cfg.input_size,
            cfg.input_size
        );
        eprintln!("the app's crops, cut as {} cuts them: {:?}", dir.display(), manifest.crop);
        cfg.app_crop = Some(manifest.crop);
    }
    Ok(cfg)
}

fn read_manifest(dir: &Path) -> Result<ModelManifest> {
    let json =
        std::fs::read(dir.join("manifest.json")).with_context(|| format!("reading {}/manifest.json", dir.display()))?;
    ModelManifest::from_json(&json).with_context(|| format!("the model {}", dir.display()))
}

/// Refuses a teacher that would make a distillation run's numbers wrong, saying why: one whose
/// outputs are other labels or in another order (its probabilities would teach the wrong
/// classes), or, where the run holds out validation images, one that trained on them (another
/// seed's split, other FERPlus labels, or none held out): the student would learn those images'
/// answers from it and score too well on them.
fn check_teacher(dir: &Path, cfg: &TrainConfig, labels: &[Emotion]) -> Result<()> {
    let manifest = read_manifest(dir).with_context(|| format!("the teacher {}", dir.display()))?;
    anyhow::ensure!(
        manifest.labels.len() != labels.len() || manifest.labels == labels,
        "the teacher {} has the labels {:?}, this run {:?} (the same, in the same order, are needed)",
        dir.display(),
        manifest.labels,
        labels
    );
    if cfg.no_validation {
        return Ok(());
    }
    let t = train_config_of(&manifest, dir).with_context(|| format!("the teacher {}", dir.display()))?;
    if t.same_validation_split(cfg) {
        return Ok(());
    }
    let mode = |c: &TrainConfig| c.ferplus.as_ref().map(|f| f.mode);
    let split = match (t.no_validation, mode(&t) == mode(cfg)) {
        (true, _) => "no validation images held out".to_string(),
        (false, true) => format!("the split of seed {}", t.seed),
        (false, false) => format!("the split of seed {} with other FERPlus labels", t.seed),
    };
    anyhow::bail!(
        "the teacher {} trained with {split}, this run holds out the split of seed {}: the teacher trained on \
         some of this run's validation images. Train the teacher with this run's --seed and labels.",
        dir.display(),
        cfg.seed
    )
}
