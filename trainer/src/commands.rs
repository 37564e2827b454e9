//! `train`, `cv` and `evaluate`: datasets in, models and versioned JSON reports out.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mien::align::CropConfig;
use mien::align::FaceCrop;
use mien::burn::prelude::Device;
use mien::classify::{ExpressionClassifier, ModelManifest, MANIFEST_SCHEMA_VERSION};
use mien::metrics::{ConfusionMatrix, Report};
use mien::Emotion;

use crate::crops::crops_of;
use crate::cv::{cross_validate, summarise};
use crate::datasets::{self, Dataset};
use crate::detect::detector;
use crate::ferplus::FerPlusLabels;
use crate::train::{train, Example, TrainConfig};

/// Examples, the subject of each, and the label list.
pub type Examples = (Vec<Example>, Vec<Option<String>>, Vec<Emotion>);

/// Examples of a dataset, with their subjects and the label list (canonical order of the
/// emotions present). Unusable images are skipped and counted, never fatal.
pub fn examples_of(dataset: &Dataset, crop: &CropConfig) -> Result<Examples> {
    let labels = dataset.labels();
    // Full frames (the CK+ official layout, or photos in class folders) need the detector; images
    // no larger than a face crop are used as they are.
    let needs_detector = dataset.samples.iter().any(|s| matches!(s.pixels, datasets::Pixels::File(_)));
    let det = if needs_detector { Some(detector(20.0)?) } else { None };
    let cache = crop_cache_dir();
    let crops = crops_of(&dataset.samples, crop, det.as_ref(), Some(&cache));
    let mut examples = Vec::new();
    let mut subjects = Vec::new();
    let mut skipped = 0;
    for (sample, crop) in dataset.samples.iter().zip(crops) {
        match crop {
            Ok(c) => {
                examples.push(Example {
                    pixels: c.pixels,
                    label: labels.iter().position(|&l| l == sample.label).unwrap_or(0),
                    soft: sample.votes.as_ref().map(|v| soft_target(v, &labels)),
                });
                subjects.push(sample.subject.clone());
            }
            Err(s) => {
                skipped += 1;
                if skipped <= 5 {
                    eprintln!("skipped {}: {}", s.id, s.reason);
                }
            }
        }
    }
    if skipped > 0 {
        eprintln!("{skipped} of {} images skipped (unreadable or no face)", dataset.samples.len());
    }
    anyhow::ensure!(!examples.is_empty(), "{}: no usable images", dataset.root.display());
    Ok((examples, subjects, labels))
}

/// Vote shares (in [`Emotion::ALL`] order) as a target over `labels`, renormalised (an emotion
/// outside the label list gives up its share).
fn soft_target(votes: &[f32], labels: &[Emotion]) -> Vec<f32> {
    let v: Vec<f32> = labels.iter().map(|l| votes.get(l.index()).copied().unwrap_or(0.0)).collect();
    let sum: f32 = v.iter().sum();
    if sum > 0.0 {
        v.into_iter().map(|x| x / sum).collect()
    } else {
        v
    }
}

/// Where face crops of full frames are cached: `$MIEN_CACHE/crops`, default `~/.cache/mien/crops`.
fn crop_cache_dir() -> PathBuf {
    let base = std::env::var_os("MIEN_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir).join(".cache/mien")
    });
    base.join("crops")
}

/// Opens a dataset, with FERPlus's labels where asked.
pub fn open_dataset(path: &Path, ferplus: Option<&FerPlusLabels>) -> Result<Dataset> {
    let mut d = datasets::open(path)?;
    eprintln!("{}: recognised as {}; {} images", path.display(), d.layout, d.samples.len());
    if let Some(f) = ferplus {
        crate::ferplus::apply_ferplus(&mut d, Path::new(&f.dir), f.mode)?;
    }
    for note in &d.notes {
        eprintln!("note: {note}");
    }
    Ok(d)
}

fn label_names(labels: &[Emotion]) -> Vec<String> {
    labels.iter().map(|l| l.name().to_string()).collect()
}

fn write_report(path: &Path, value: &serde_json::Value) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, crate::json::pretty(value)?)?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("report written to {}", path.display());
    Ok(())
}

/// Prints the per-class table and confusion matrix, as the study did.
pub fn print_report(title: &str, m: &ConfusionMatrix) {
    let r = Report::from_confusion(m);
    println!(
        "{title}: accuracy {:.2}% ({} of {}), macro-F1 {:.3}",
        100.0 * r.accuracy,
        m.correct(),
        m.total(),
        r.macro_f1
    );
    println!("{:<10} {:>9} {:>9} {:>9} {:>8}", "label", "precision", "recall", "f1", "support");
    for l in &r.labels {
        let c = &r.per_class[l];
        println!("{:<10} {:>9.3} {:>9.3} {:>9.3} {:>8}", l, c.precision, c.recall, c.f1, c.support);
    }
    println!("confusion matrix (rows = true, columns = predicted):");
    print!("{:<10}", "");
    for l in &r.labels {
        print!(" {:>6.6}", l);
    }
    println!();
    for (l, row) in r.labels.iter().zip(&r.confusion_matrix) {
        print!("{:<10}", l);
        for c in row {
            print!(" {:>6}", c);
        }
        println!();
    }
}

/// Folds already in a partial report at `report` written by the same run settings.
fn finished_folds(report: &Path, cfg: &TrainConfig, folds: usize, labels: &[String]) -> Vec<Report> {
    let Ok(bytes) = std::fs::read(report) else { return Vec::new() };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else { return Vec::new() };
    let same = v["meta"]["train_config"] == serde_json::to_value(cfg).unwrap_or_default()
        && v["meta"]["folds_requested"] == folds
        && v["labels"] == serde_json::to_value(labels).unwrap_or_default();
    if !same {
        return Vec::new();
    }
    let folds: Vec<Report> = serde_json::from_value(v["folds"].clone()).unwrap_or_default();
    // Folds measured before evaluation averaged each crop with its mirror image do not mix with
    // folds measured after.
    if folds.iter().any(|f| f.meta.get("flip_average") != Some(&serde_json::Value::Bool(true))) {
        return Vec::new();
    }
    folds
}

fn cv_report(
    dataset: &Dataset,
    subjects: usize,
    cfg: &TrainConfig,
    k: usize,
    names: &[String],
    folds: &[Report],
    seconds: f64,
) -> Result<serde_json::Value> {
    let summary = summarise(names, folds);
    let mut report = Report::from_confusion(&summary.pooled);
    report.meta.insert("kind".into(), "cross_validation".into());
    report.meta.insert("dataset".into(), dataset.root.display().to_string().into());
    report.meta.insert("layout".into(), dataset.layout.to_string().into());
    report.meta.insert("grouped_by".into(), "subject".into());
    report.meta.insert("subjects".into(), subjects.into());
    report.meta.insert("train_config".into(), serde_json::to_value(cfg)?);
    report.meta.insert("folds_requested".into(), k.into());
    report.meta.insert("complete".into(), (folds.len() == k).into());
    report.meta.insert("wall_seconds".into(), seconds.into());
    report.meta.insert(
        "reproduce".into(),
        format!("{TRAINER} cv --data {} --folds {k} --report <file>{}", dataset.root.display(), train_args(cfg)).into(),
    );
    let mut value = serde_json::to_value(&report)?;
    value["folds"] = serde_json::to_value(folds)?;
    value["accuracy_mean"] = summary.accuracy_mean.into();
    value["accuracy_std"] = summary.accuracy_std.into();
    Ok(value)
}

/// Subject-independent k-fold cross-validation. The report is rewritten after every fold (marked
/// `"complete": false` until the last), and `resume` reuses the folds of an interrupted run.
pub fn cv(data: &Path, folds: usize, cfg: &TrainConfig, report: &Path, resume: bool) -> Result<()> {
    let dataset = open_dataset(data, cfg.ferplus.as_ref())?;
    let crop = CropConfig { size: cfg.input_size, ..CropConfig::default() };
    let (examples, subjects, labels) = examples_of(&dataset, &crop)?;
    let names = label_names(&labels);
    let distinct: std::collections::BTreeSet<_> = subjects.iter().flatten().collect();
    eprintln!(
        "{}-fold cross-validation grouped by subject ({} subjects), {} images, labels {:?}",
        folds,
        distinct.len(),
        examples.len(),
        names
    );
    let done = if resume { finished_folds(report, cfg, folds, &names) } else { Vec::new() };
    if !done.is_empty() {
        eprintln!("resuming: {} of {folds} folds already in {}", done.len(), report.display());
    }
    let started = std::time::Instant::now();
    let subjects_n = distinct.len();
    let fold_reports = cross_validate(&examples, &subjects, &names, folds, cfg, done, |f, so_far| {
        let r = &so_far[so_far.len() - 1];
        eprintln!(
            "fold {:>2}/{folds}: accuracy {:.2}% on {} test images (model of epoch {})",
            f + 1,
            100.0 * r.accuracy,
            r.meta["test_images"],
            r.meta["best_epoch"]
        );
        // Written after every fold, so an interrupted run loses at most the fold in progress.
        let partial = cv_report(&dataset, subjects_n, cfg, folds, &names, so_far, started.elapsed().as_secs_f64());
        if let Err(e) = partial.and_then(|v| write_report(report, &v)) {
            eprintln!("warning: could not write the partial report: {e:#}");
        }
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let summary = summarise(&names, &fold_reports);
    print_report("pooled over folds", &summary.pooled);
    println!(
        "accuracy over {folds} subject-independent folds: {:.2}% ± {:.2}% (mean ± std); wall time {:.0} s",
        100.0 * summary.accuracy_mean,
        100.0 * summary.accuracy_std,
        seconds
    );
    let value = cv_report(&dataset, subjects_n, cfg, folds, &names, &fold_reports, seconds)?;
    write_report(report, &value)?;
    let png = report.with_extension("confusion.png");
    crate::plots::confusion_png(&png, &names, &summary.pooled.counts)?;
    eprintln!("confusion matrix plot written to {}", png.display());
    Ok(())
}

/// A dataset split as `train` splits it: the images it trains on, the validation part (10 % of
/// subjects, or samples, drawn with the run's seed; none with `--no-validation`), and the label
/// list. Never the dataset's test splits, nor training copies of their images.
pub struct TrainingSplit {
    pub dataset: Dataset,
    pub train: Vec<Example>,
    pub val: Vec<Example>,
    pub labels: Vec<Emotion>,
}

pub fn training_split(data: &Path, cfg: &TrainConfig) -> Result<TrainingSplit> {
    let mut dataset = open_dataset(data, cfg.ferplus.as_ref())?;
    let copies = dataset.training_copies_of_test_images();
    if !copies.is_empty() {
        dataset.samples.retain(|s| !copies.contains(&s.id));
        eprintln!("left out {} training images identical to a test-split image", copies.len());
    }
    let crop = CropConfig { size: cfg.input_size, ..CropConfig::default() };
    let usage: Vec<Option<String>> = dataset.samples.iter().map(|s| s.usage.clone()).collect();
    let (examples, subjects, labels) = examples_of(&dataset, &crop)?;
    let folds = crate::cv::subject_folds(&subjects, 10, cfg.seed);
    let (mut tr, mut val) = (Vec::new(), Vec::new());
    for ((ex, fold), usage) in examples.into_iter().zip(folds).zip(usage) {
        match usage.as_deref() {
            Some("PublicTest") | Some("PrivateTest") => {}
            _ if fold == 0 && !cfg.no_validation => val.push(ex),
            _ => tr.push(ex),
        }
    }
    Ok(TrainingSplit { dataset, train: tr, val, labels })
}

/// Trains on a dataset (its own training split if it has one, else all of it minus a
/// subject-disjoint validation part) and writes a model folder. With `keep_epochs` every epoch's
/// weights stay in the checkpoints folder, for [`average_model`].
pub fn train_model(data: &Path, cfg: &TrainConfig, out: &Path, resume: bool, keep_epochs: bool) -> Result<()> {
    let TrainingSplit { dataset, train: tr, val, labels } = training_split(data, cfg)?;
    if let Some(d) = &cfg.distill {
        d.teachers.iter().try_for_each(|t| check_teacher(Path::new(t), cfg, &labels))?;
    }
    eprintln!("training on {} images, validating on {}", tr.len(), val.len());
    std::fs::create_dir_all(out)?;
    let checkpoints = out.join("checkpoints");
    let lineage = lineage(cfg, &checkpoints, !resume)?;
    let keep = crate::train::Checkpoints { dir: checkpoints.clone(), keep_epochs };
    let trained = train(&tr, &val, labels.len(), cfg, Some(&keep), resume, false)?;
    let mut reproduce = lineage.reproduce(&dataset.root, cfg, out);
    if keep_epochs {
        reproduce += " --keep-epochs";
    }
    crate::plots::curves_png(&out.join("learning_curves.png"), &lineage.init_history, &trained.history)?;
    write_model(out, &trained.net, cfg, &labels, &trained.history, &lineage.init_history, &dataset, tr.len(), reproduce)
}

/// Refuses a teacher that would make a distillation run's numbers wrong, saying why: one whose
/// outputs are other labels or in another order (its probabilities would teach the wrong
/// classes), or, where the run holds out validation images, one that trained on them (another
/// seed's split, other FERPlus labels, or none held out): the student would learn those images'
/// answers from it and score too well on them.
fn check_teacher(dir: &Path, cfg: &TrainConfig, labels: &[Emotion]) -> Result<()> {
    let json = std::fs::read(dir.join("manifest.json"))
        .with_context(|| format!("reading the teacher's {}/manifest.json", dir.display()))?;
    let manifest = ModelManifest::from_json(&json).with_context(|| format!("the teacher {}", dir.display()))?;
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

/// The training settings a model folder's manifest records (`train_config`): which images its
/// run held out for validation follows from them.
fn train_config_of(manifest: &ModelManifest, model: &Path) -> Result<TrainConfig> {
    manifest
        .info
        .get("train_config")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .with_context(|| format!("{}/manifest.json: train_config is not a training configuration", model.display()))?
        .with_context(|| {
            format!("{}/manifest.json has no train_config: which split was validation is not known", model.display())
        })
}

/// Writes a model folder with the mean of a run's weights after epochs `first..=last` (kept by
/// `train --keep-epochs`), batch norm measured again on `bn_batches` training batches. Prints the
/// validation accuracy of the mean beside the run's own epochs': a mean that does worse than the
/// run's best epoch on validation is written all the same, and the numbers say so.
pub fn average_model(
    data: &Path,
    checkpoints: &Path,
    (first, last): (usize, usize),
    bn_batches: usize,
    out: &Path,
) -> Result<()> {
    let (cfg, num_classes, history, _) = crate::train::read_checkpoint(checkpoints)?;
    anyhow::ensure!(
        first >= 1 && first <= last && last <= history.len(),
        "--epochs {first}-{last}: the run in {} has finished epochs 1 to {}",
        checkpoints.display(),
        history.len()
    );
    let files: Vec<PathBuf> = (first..=last).map(|e| crate::train::epoch_weights(checkpoints, e)).collect();
    if let Some(missing) = files.iter().find(|f| !f.exists()) {
        anyhow::bail!(
            "{} is missing: only a run trained with --keep-epochs keeps every epoch's weights",
            missing.display()
        );
    }
    let TrainingSplit { dataset, train: tr, val, labels } = training_split(data, &cfg)?;
    anyhow::ensure!(
        labels.len() == num_classes,
        "{} has {} labels but the checkpoint has {num_classes} outputs",
        data.display(),
        labels.len()
    );
    eprintln!("averaging the weights of epochs {first} to {last} ({} files)", files.len());
    let mean = crate::average::average_weights(&files, &cfg, num_classes)?;
    let averaged_statistics = crate::train::accuracy(&mean, &val, &cfg);
    let net = crate::average::refresh_batch_norm(mean, &tr, &cfg, bn_batches);
    let refreshed = crate::train::accuracy(&net, &val, &cfg);
    let pct =
        |v: Option<f64>| v.map(|v| format!("{:.2}%", 100.0 * v)).unwrap_or_else(|| "- (no validation split)".into());
    // The earliest epoch with the highest validation accuracy.
    let best =
        history
            .iter()
            .filter_map(|h| h.val_accuracy.map(|v| (h.epoch, v)))
            .reduce(|best, x| if x.1 > best.1 { x } else { best });
    for h in &history[first - 1..last] {
        eprintln!("  epoch {:>3}: validation {}", h.epoch, pct(h.val_accuracy));
    }
    eprintln!(
        "  mean of epochs {first}-{last}, their mean batch-norm statistics: validation {}",
        pct(averaged_statistics)
    );
    eprintln!(
        "  mean of epochs {first}-{last}, batch norm measured on {bn_batches} batches: validation {}",
        pct(refreshed)
    );
    if let Some((epoch, v)) = best {
        eprintln!("  the run's best epoch, {epoch}: validation {:.2}%", 100.0 * v);
    }
    let lineage = lineage(&cfg, checkpoints, false)?;
    let run_dir = checkpoints.parent().unwrap_or(checkpoints);
    let reproduce = format!(
        "{} --keep-epochs && {TRAINER} average --data {} --checkpoints {} --epochs {first}-{last} --bn-batches {bn_batches} --out {}",
        lineage.reproduce(&dataset.root, &cfg, run_dir),
        data.display(),
        checkpoints.display(),
        out.display()
    );
    write_model(out, &net, &cfg, &labels, &history, &lineage.init_history, &dataset, tr.len(), reproduce)?;
    // The model card says what the weights are: not one epoch's, a mean.
    let manifest_path = out.join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_path)?)?;
    let architecture = manifest["info"]["architecture"].as_str().unwrap_or("ExpressionNet").to_owned();
    manifest["info"]["architecture"] = format!(
        "{architecture}; weights: the mean of epochs {first}–{last} (stochastic weight averaging), batch norm measured again"
    )
    .into();
    manifest["info"]["weight_averaging"] = serde_json::json!({
        "epochs": [first, last],
        "batch_norm_batches": bn_batches,
        "val_accuracy": refreshed,
        "val_accuracy_with_mean_statistics": averaged_statistics,
        "best_epoch": best.map(|b| b.0),
        "best_epoch_val_accuracy": best.map(|b| b.1),
    });
    std::fs::write(&manifest_path, crate::json::pretty(&manifest)?)?;
    Ok(())
}

/// What a run builds on (its `--init` and `--teacher` model folders), from their manifests: the
/// commands that made them (a fine-tuned or distilled model is only reproducible with them) and
/// the training history of the model it starts from. Read when the run starts and kept beside its
/// checkpoints (`lineage.json`), because those folders may be overwritten before the run is
/// exported: a run that fine-tunes `assets/model` is exported into `assets/model`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Lineage {
    /// The `reproduce` commands of the models the run builds on, each followed by ` && `.
    reproduce: String,
    /// The `--init` model's history, epoch by epoch (empty without one).
    init_history: Vec<crate::train::EpochStats>,
    /// Each `--init` or `--teacher` folder as given, beside the folder its `reproduce` commands
    /// write it to (their last `--out`). The run's own command names the second: the folder given
    /// is often `assets/model`, which holds another model once this run's model is shipped there.
    #[serde(default)]
    made_in: Vec<(String, String)>,
}

impl Lineage {
    /// The commands that reproduce a run with `cfg` on `data` into `out`: those of the models it
    /// builds on, then its own, naming them where those commands write them.
    fn reproduce(&self, data: &Path, cfg: &TrainConfig, out: &Path) -> String {
        let mut cfg = cfg.clone();
        let made_in = |dir: &mut String| {
            if let Some((_, chain_out)) = self.made_in.iter().find(|(given, _)| given == dir) {
                dir.clone_from(chain_out);
            }
        };
        if let Some(init) = cfg.init.as_mut() {
            made_in(init);
        }
        if let Some(d) = cfg.distill.as_mut() {
            d.teachers.iter_mut().for_each(made_in);
        }
        format!("{}{}", self.reproduce, reproduce_command(data, &cfg, out))
    }
}

/// The model folders a run builds on: its `--init`, then its `--teacher`s.
fn built_on(cfg: &TrainConfig) -> impl Iterator<Item = &String> {
    cfg.init.iter().chain(cfg.distill.iter().flat_map(|d| &d.teachers))
}

/// The folder a chain of `reproduce` commands writes its model to: its last `--out`.
fn chain_output(steps: &str) -> Option<String> {
    let (_, after) = steps.rsplit_once(" --out ")?;
    after.split_whitespace().next().map(str::to_owned)
}

/// The run's [`Lineage`]: `fresh` reads it from the model folders (a new run); otherwise the one
/// kept beside the checkpoints is used where there is one (a resumed run, an export).
fn lineage(cfg: &TrainConfig, checkpoints: &Path, fresh: bool) -> Result<Lineage> {
    let kept = checkpoints.join("lineage.json");
    if !fresh {
        if let Some(mut l) = std::fs::read(&kept).ok().and_then(|b| serde_json::from_slice::<Lineage>(&b).ok()) {
            // Kept before `made_in` existed: with one model to build on, its chain is all of it.
            let given: Vec<&String> = built_on(cfg).collect();
            if let ([dir], true, Some(out)) = (given.as_slice(), l.made_in.is_empty(), chain_output(&l.reproduce)) {
                l.made_in.push(((*dir).clone(), out));
            }
            return Ok(l);
        }
    }
    let manifest = |dir: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(Path::new(dir).join("manifest.json")).ok()?).ok()
    };
    let mut lineage = Lineage::default();
    if cfg.init.is_none() && cfg.distill.is_none() {
        // A run from random weights builds on nothing: no file to keep.
        return Ok(lineage);
    }
    for dir in built_on(cfg) {
        if let Some(steps) = manifest(dir).as_ref().and_then(|m| m["info"]["reproduce"].as_str().map(str::to_owned)) {
            if let Some(out) = chain_output(&steps) {
                lineage.made_in.push((dir.clone(), out));
            }
            // Two teachers may share steps (one distilled from the other): each is run once.
            for step in steps.split(" && ") {
                if !lineage.reproduce.split(" && ").any(|done| done == step) {
                    lineage.reproduce += step;
                    lineage.reproduce += " && ";
                }
            }
        }
    }
    if let Some(m) = cfg.init.as_deref().and_then(manifest) {
        lineage.init_history = serde_json::from_value(m["info"]["history"].clone()).unwrap_or_default();
    }
    std::fs::create_dir_all(checkpoints)?;
    std::fs::write(&kept, serde_json::to_vec_pretty(&lineage)?)
        .with_context(|| format!("writing {}", kept.display()))?;
    Ok(lineage)
}

/// How the `reproduce` lines the trainer writes run it: the test build's binary, through xtask
/// (`cargo run -p mien-trainer` would build burn a second time).
const TRAINER: &str = "cargo xtask trainer";

/// The command line that reproduces a training run with `cfg` on `data`.
fn reproduce_command(data: &Path, cfg: &TrainConfig, out: &Path) -> String {
    format!("{TRAINER} train --data {} --out {}{}", data.display(), out.display(), train_args(cfg))
}

/// The training options on the command line that give `cfg` (those that differ from the defaults).
fn train_args(cfg: &TrainConfig) -> String {
    let d = TrainConfig::default();
    let mut cmd = String::new();
    if cfg.epochs != d.epochs {
        cmd += &format!(" --epochs {}", cfg.epochs);
    }
    if cfg.patience != d.patience {
        cmd += &format!(" --patience {}", cfg.patience);
    }
    if cfg.last_epoch {
        cmd += " --last-epoch";
    }
    if cfg.no_validation {
        cmd += " --no-validation";
    }
    if cfg.lr != d.lr {
        cmd += &format!(" --lr {}", cfg.lr);
    }
    if cfg.width != d.width {
        cmd += &format!(" --width {}", cfg.width);
    }
    if cfg.layout != d.layout && cfg.init.is_none() {
        cmd += &format!(" --layout {}", cfg.layout);
    }
    if cfg.dropout != d.dropout {
        cmd += &format!(" --dropout {}", cfg.dropout);
    }
    if cfg.augment != d.augment {
        cmd += &format!(" --augment {}", cfg.augment);
    }
    if cfg.batch_size != d.batch_size {
        cmd += &format!(" --batch-size {}", cfg.batch_size);
    }
    if cfg.label_smoothing != d.label_smoothing {
        cmd += &format!(" --label-smoothing {}", cfg.label_smoothing);
    }
    if !cfg.class_weights {
        cmd += " --no-class-weights";
    }
    if let Some(init) = &cfg.init {
        cmd += &format!(" --init {init}");
    }
    if let Some(f) = &cfg.ferplus {
        cmd += &format!(" --ferplus {}", f.dir);
        if f.mode != crate::ferplus::FerPlusMode::Soft {
            cmd += " --ferplus-mode majority";
        }
    }
    if let Some(t) = &cfg.distill {
        for teacher in &t.teachers {
            cmd += &format!(" --teacher {teacher}");
        }
        cmd += &format!(" --distill-weight {} --distill-temperature {}", t.weight, t.temperature);
    }
    if cfg.lanes != d.lanes {
        cmd += &format!(" --lanes {}", cfg.lanes);
    }
    if cfg.seed != d.seed {
        cmd += &format!(" --seed {}", cfg.seed);
    }
    cmd
}

#[allow(clippy::too_many_arguments)]
/// Writes a model folder: `classifier.safetensors` and a `manifest.json` that says everything
/// needed to use the weights as trained, and where they came from.
pub fn write_model(
    out: &Path,
    net: &mien::classify::ExpressionNet,
    cfg: &TrainConfig,
    labels: &[Emotion],
    history: &[crate::train::EpochStats],
    init_history: &[crate::train::EpochStats],
    dataset: &Dataset,
    train_images: usize,
    reproduce: String,
) -> Result<()> {
    use mien::burn::module::Module;
    std::fs::create_dir_all(out)?;
    let weights = out.join("classifier.safetensors");
    // Saved as f32, then written as the app ships it: f16, and int8 with per-channel scales.
    let mut store = burn_store::SafetensorsStore::from_bytes(None);
    burn_store::ModuleSnapshot::save_into(net, &mut store).map_err(|e| anyhow::anyhow!("{e}"))?;
    let f32_bytes = store.get_bytes().map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::train::write_atomic(
        &weights,
        &mien::weights::quantize(&f32_bytes, "classifier.safetensors", mien::weights::CLASSIFIER_INT8_MIN_ELEMENTS)?,
    )?;
    let bytes = std::fs::metadata(&weights)?.len();
    let fer = matches!(dataset.layout, datasets::Layout::Fer2013Csv | datasets::Layout::Fer2013Folders);
    // Images per label in the training split (validation part included), never the test splits.
    let mut counts = serde_json::Map::new();
    for label in labels {
        let n = dataset
            .samples
            .iter()
            .filter(|s| s.label == *label && !matches!(s.usage.as_deref(), Some("PublicTest") | Some("PrivateTest")))
            .count();
        counts.insert(label.name().into(), n.into());
    }
    let mut info = serde_json::Map::new();
    info.insert("dataset".into(), dataset.root.display().to_string().into());
    info.insert("layout".into(), dataset.layout.to_string().into());
    info.insert(
        "training_data".into(),
        if fer {
            format!("FER2013 train ({train_images} images for training, a seeded 10% held out for validation); PublicTest never used for training or model selection")
        } else {
            format!("{} ({train_images} images for training)", dataset.root.display())
        }
        .into(),
    );
    info.insert(
        "licences".into(),
        if fer {
            "FER2013: research use only (Kaggle / ICML 2013 challenge); the weights are a research artefact and inherit that restriction"
        } else {
            "see the dataset's own licence"
        }
        .into(),
    );
    info.insert(
        "architecture".into(),
        match cfg.layout {
            1 => format!(
                "ExpressionNet width {} (layout 1): strided conv stem, 5 depthwise-separable blocks with batch norm, global average pooling, linear head",
                cfg.width
            ),
            _ => format!(
                "ExpressionNet width {} (layout {}): conv stem, 7 depthwise-separable blocks (the first strided) with batch norm, global average pooling, linear head",
                cfg.width, cfg.layout
            ),
        }
        .into(),
    );
    info.insert("parameters".into(), net.num_params().into());
    info.insert("weights_bytes".into(), bytes.into());
    info.insert(
        "weights_storage".into(),
        format!(
            "f16, and int8 with one scale per output channel for tensors of {}+ elements (mien::weights::quantize); loaded as f32",
            mien::weights::CLASSIFIER_INT8_MIN_ELEMENTS
        )
        .into(),
    );
    info.insert("train_counts".into(), counts.into());
    info.insert("reproduce".into(), reproduce.into());
    info.insert(
        "weaknesses".into(),
        "Trained on 48×48 gray FER2013 crops: faces far from frontal, strong side light, and the rare classes \
         (disgust: 1.5% of training images; fear) are recognised worst. Expressions are posed or spontaneous \
         internet photos; labels are one annotator's reading. No contempt class."
            .into(),
    );
    info.insert("train_config".into(), serde_json::to_value(cfg)?);
    info.insert("history".into(), serde_json::to_value(history)?);
    if !init_history.is_empty() {
        // The epochs of the model this one was fine-tuned from (`train_config.init`), so its
        // learning curves can be read whole.
        info.insert("init_history".into(), serde_json::to_value(init_history)?);
    }
    let mut crop = CropConfig { size: cfg.input_size, ..CropConfig::default() };
    // Keep a crop margin already tuned for this folder (`crop-check --tune`).
    let manifest_path = out.join("manifest.json");
    if let Ok(old) = std::fs::read(&manifest_path)
        .map_err(|_| ())
        .and_then(|b| serde_json::from_slice::<ModelManifest>(&b).map_err(|_| ()))
    {
        if old.input_size == cfg.input_size {
            crop = old.crop;
            if let Some(t) = old.info.get("crop_tuning") {
                info.insert("crop_tuning".into(), t.clone());
            }
        }
    }
    let manifest = ModelManifest {
        schema_version: MANIFEST_SCHEMA_VERSION,
        labels: labels.to_vec(),
        input_size: cfg.input_size,
        mean: cfg.mean,
        std: cfg.std,
        crop,
        width: cfg.width,
        layout: cfg.layout,
        flip_average: true,
        info,
    };
    std::fs::write(&manifest_path, crate::json::pretty(&manifest)?)?;
    eprintln!(
        "model written to {} ({} labels: {:?}, {} bytes of weights)",
        out.display(),
        labels.len(),
        label_names(labels),
        bytes
    );
    Ok(())
}

/// Writes a model folder from the best checkpoint of a (possibly unfinished) training run.
pub fn export_model(data: &Path, checkpoints: &Path, out: &Path) -> Result<()> {
    let (cfg, num_classes, history, best) = crate::train::read_checkpoint(checkpoints)?;
    let dataset = open_dataset(data, cfg.ferplus.as_ref())?;
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

/// The model folder the web app ships (`assets/model` of this repository).
pub fn shipped_model_dir() -> PathBuf {
    crate::repo_root().join("assets/model")
}

/// How a model folder is named in reports: the shipped one by its place in the repository (not
/// this machine's absolute path), others as given.
pub fn model_label(model: &Path) -> String {
    let shipped = shipped_model_dir();
    let same = match (model.canonicalize(), shipped.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => model == shipped,
    };
    if same {
        "assets/model".to_string()
    } else {
        model.display().to_string()
    }
}

/// `mien-trainer quantize`: writes `input`'s weights compacted the way the MTCNN files are (f16, and
/// int8 with per-channel scales for tensors of `mien::weights::INT8_MIN_ELEMENTS`+ elements; see
/// `mien::weights::quantize`), and says how much smaller the file became. (`export` compacts the
/// expression classifier itself, with its own threshold.)
pub fn quantize_file(input: &Path, output: &Path) -> Result<()> {
    let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let name = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let quantized = mien::weights::quantize(&bytes, &name, mien::weights::INT8_MIN_ELEMENTS)?;
    crate::train::write_atomic(output, &quantized)?;
    println!("{} ({} B) -> {} ({} B, f16 + int8)", input.display(), bytes.len(), output.display(), quantized.len());
    Ok(())
}

/// Loads a model folder (`manifest.json` + `classifier.safetensors`) onto the CPU backend.
pub fn load_classifier(model: &Path) -> Result<ExpressionClassifier> {
    let manifest = std::fs::read(model.join("manifest.json")).with_context(|| {
        format!(
            "reading {}/manifest.json (a model folder holds manifest.json and classifier.safetensors)",
            model.display()
        )
    })?;
    let weights = std::fs::read(model.join("classifier.safetensors"))
        .with_context(|| format!("reading {}/classifier.safetensors", model.display()))?;
    ExpressionClassifier::load(&manifest, &weights, &Device::flex())
        .with_context(|| format!("loading the model in {}", model.display()))
}

/// Confusion matrix of a classifier on crops, through the same code the browser runs
/// (normalisation and test-time flip from the manifest).
pub fn evaluate_classifier(classifier: &ExpressionClassifier, examples: &[Example]) -> Result<ConfusionMatrix> {
    evaluate_ensemble(std::slice::from_ref(classifier), examples)
}

/// [`evaluate_classifier`] for the mean of several classifiers' probabilities (an ensemble: how
/// a distillation run with several `--teacher`s sees them). All take the first one's crops.
pub fn evaluate_ensemble(classifiers: &[ExpressionClassifier], examples: &[Example]) -> Result<ConfusionMatrix> {
    let manifest = classifiers.first().context("no model to evaluate")?.manifest();
    for other in &classifiers[1..] {
        let o = other.manifest();
        anyhow::ensure!(
            o.labels == manifest.labels && o.input_size == manifest.input_size,
            "the models of an ensemble need the same labels and input size: {:?} {}×{} and {:?} {}×{}",
            manifest.labels,
            manifest.input_size,
            manifest.input_size,
            o.labels,
            o.input_size,
            o.input_size
        );
    }
    let mut m = ConfusionMatrix::new(label_names(&manifest.labels));
    for chunk in examples.chunks(256) {
        let crops: Vec<FaceCrop> =
            chunk.iter().map(|e| FaceCrop { size: manifest.input_size, pixels: e.pixels.clone() }).collect();
        let refs: Vec<&FaceCrop> = crops.iter().collect();
        let mut sum = vec![vec![0.0f32; manifest.labels.len()]; chunk.len()];
        for classifier in classifiers {
            for (s, p) in sum.iter_mut().zip(classifier.classify(&refs)?) {
                s.iter_mut().zip(p).for_each(|(s, p)| *s += p);
            }
        }
        for (p, e) in sum.iter().zip(chunk) {
            m.add(e.label, argmax(p));
        }
    }
    Ok(m)
}

pub fn argmax(p: &[f32]) -> usize {
    p.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0
}

/// The samples of `dataset` a hold-out evaluation uses: its PublicTest split where it has one
/// (FER2013), else all of it; only labels the model knows. Labels are re-indexed to the model's order.
pub fn holdout_examples(dataset: &mut Dataset, manifest: &ModelManifest) -> Result<Vec<Example>> {
    if dataset.samples.iter().any(|s| s.usage.as_deref() == Some("PublicTest")) {
        dataset.samples.retain(|s| s.usage.as_deref() == Some("PublicTest"));
        eprintln!("evaluating on the PublicTest split: {} images", dataset.samples.len());
    }
    let before = dataset.samples.len();
    dataset.samples.retain(|s| manifest.labels.contains(&s.label));
    if dataset.samples.len() < before {
        eprintln!("{} images of labels the model does not have are left out", before - dataset.samples.len());
    }
    let (examples, _, labels) = examples_of(dataset, &manifest.crop)?;
    in_model_order(examples, &labels, manifest)
}

/// `examples` labelled by index into `labels` (a dataset's order), re-labelled by index into the
/// model's; a label the model does not have is an error.
fn in_model_order(examples: Vec<Example>, labels: &[Emotion], manifest: &ModelManifest) -> Result<Vec<Example>> {
    examples
        .into_iter()
        .map(|e| {
            let label = manifest.labels.iter().position(|l| *l == labels[e.label]);
            label
                .map(|label| Example { label, ..e })
                .with_context(|| format!("the dataset has the label {:?}, which the model does not", labels[e.label]))
        })
        .collect()
}

/// Evaluates a saved model folder on the validation split its training run held out: the split is
/// rebuilt from the manifest's `train_config` (seed, labels, input size) exactly as `train` and
/// `average` build it, and scored as the app scores (the classifier, with its test-time flip).
///
/// With several models, scores the mean of their probabilities (an ensemble, such as the
/// teachers of a distillation run). Their runs must have held out the same split (the same
/// seed, with validation): otherwise one model's validation images trained another.
pub fn evaluate_on_validation(models: &[PathBuf], data: &Path, report: &Path, other_labels: bool) -> Result<()> {
    anyhow::ensure!(
        !other_labels,
        "--validation scores with the labels the model trained on (its train_config); leave out --ferplus"
    );
    let models = if models.is_empty() { vec![shipped_model_dir()] } else { models.to_vec() };
    let mut classifiers = Vec::new();
    let mut configs = Vec::new();
    for model in &models {
        let classifier = load_classifier(model)?;
        let cfg = train_config_of(classifier.manifest(), model)?;
        anyhow::ensure!(
            !cfg.no_validation,
            "{} was trained without a validation split (--no-validation)",
            model.display()
        );
        classifiers.push(classifier);
        configs.push(cfg);
    }
    let cfg = &configs[0];
    for (model, other) in models.iter().zip(&configs).skip(1) {
        anyhow::ensure!(
            other.same_validation_split(cfg),
            "{} held out another validation split (seed {}) than {} (seed {}): it trained on some of the images scored",
            model.display(),
            other.seed,
            models[0].display(),
            cfg.seed
        );
    }
    let split = training_split(data, cfg)?;
    let manifest = classifiers[0].manifest();
    let examples = in_model_order(split.val, &split.labels, manifest)?;
    eprintln!(
        "evaluating on the validation split of the model's training run (seed {}): {} images",
        cfg.seed,
        examples.len()
    );
    let m = evaluate_ensemble(&classifiers, &examples)?;
    print_report("validation", &m);
    let mut r = Report::from_confusion(&m);
    r.meta.insert("kind".into(), "validation".into());
    let labels: Vec<String> = models.iter().map(|m| model_label(m)).collect();
    r.meta.insert("model".into(), labels.join(" + ").into());
    r.meta.insert("dataset".into(), data.display().to_string().into());
    r.meta.insert("flip_average".into(), manifest.flip_average.into());
    write_report(report, &serde_json::to_value(&r)?)
}

/// Evaluates a saved model folder (default: the shipped one) on a dataset (its test split if it has one).
pub fn evaluate_model(
    model: Option<&Path>,
    data: &Path,
    report: &Path,
    record: bool,
    ferplus: Option<&FerPlusLabels>,
) -> Result<()> {
    let model = model.map(Path::to_path_buf).unwrap_or_else(shipped_model_dir);
    let classifier = load_classifier(&model)?;
    let mut dataset = open_dataset(data, ferplus)?;
    let seen = dataset.test_images_seen_in_training();
    let mut unseen_only = dataset.clone();
    let examples = holdout_examples(&mut dataset, classifier.manifest())?;
    let m = evaluate_classifier(&classifier, &examples)?;
    print_report("hold-out evaluation", &m);
    let mut r = Report::from_confusion(&m);
    if !seen.is_empty() {
        // The same evaluation without the test images that also sit, byte for byte, in training.
        unseen_only.samples.retain(|s| !seen.contains(&s.id));
        let clean = evaluate_classifier(&classifier, &holdout_examples(&mut unseen_only, classifier.manifest())?)?;
        eprintln!(
            "without the {} test images that have an identical copy in the training split: accuracy {:.2}% ({} of {}), macro-F1 {:.3}",
            m.total() - clean.total(),
            100.0 * clean.accuracy(),
            clean.correct(),
            clean.total(),
            clean.macro_f1()
        );
        r.meta.insert(
            "without_training_copies".into(),
            serde_json::json!({
                "images_left_out": m.total() - clean.total(), "images": clean.total(),
                "accuracy": clean.accuracy(), "macro_f1": clean.macro_f1(),
            }),
        );
    }
    r.meta.insert("kind".into(), "hold_out".into());
    r.meta.insert("model".into(), model_label(&model).into());
    r.meta.insert("dataset".into(), data.display().to_string().into());
    r.meta.insert("layout".into(), dataset.layout.to_string().into());
    r.meta.insert("flip_average".into(), classifier.manifest().flip_average.into());
    write_report(report, &serde_json::to_value(&r)?)?;
    let png = report.with_extension("confusion.png");
    crate::plots::confusion_png(&png, &m.labels, &m.counts)?;
    eprintln!("confusion matrix plot written to {}", png.display());
    if record {
        // The model card carries its own headline numbers, keyed by the dataset's folder name.
        let path = model.join("manifest.json");
        let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        let key = data.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "dataset".into());
        manifest["info"]["metrics"][&key] = serde_json::json!({
            "accuracy": r.accuracy, "macro_f1": r.macro_f1, "images": m.total(),
            "split": if dataset.layout.to_string().starts_with("FER2013") { "PublicTest" } else { "all" },
            "report": report.display().to_string(),
        });
        std::fs::write(&path, crate::json::pretty(&manifest)?)?;
        eprintln!("accuracy recorded in {}", path.display());
    }
    Ok(())
}

pub fn default_report(name: &str) -> PathBuf {
    PathBuf::from("reports").join(name)
}
