//! `train`, `cv` and `evaluate`: datasets in, models and versioned JSON reports out.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mien::align::CropConfig;
use mien::burn::prelude::Device;
use mien::classify::{ModelManifest, MANIFEST_SCHEMA_VERSION};
use mien::metrics::{ConfusionMatrix, Report};
use mien::Emotion;

use crate::crops::crops_of;
use crate::cv::{cross_validate, summarise};
use crate::datasets::{self, Dataset};
use crate::detect::detector;
use crate::train::{evaluate, load_weights, train, Example, TrainConfig};

/// Examples, the subject of each, and the label list.
pub type Examples = (Vec<Example>, Vec<Option<String>>, Vec<Emotion>);

/// Examples of a dataset, with their subjects and the label list (canonical order of the
/// emotions present). Unusable images are skipped and counted, never fatal.
pub fn examples_of(dataset: &Dataset, crop: &CropConfig) -> Result<Examples> {
    let labels = dataset.labels();
    let needs_detector = dataset.layout == datasets::Layout::CkPlusOfficial;
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

/// Where face crops of full frames are cached: `$MIEN_CACHE/crops`, default `~/.cache/mien/crops`.
fn crop_cache_dir() -> PathBuf {
    let base = std::env::var_os("MIEN_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir).join(".cache/mien")
    });
    base.join("crops")
}

pub fn open_dataset(path: &Path) -> Result<Dataset> {
    let d = datasets::open(path)?;
    eprintln!("{}: recognised as {}; {} images", path.display(), d.layout, d.samples.len());
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
    std::fs::write(&tmp, serde_json::to_vec_pretty(value)?)?;
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
    serde_json::from_value(v["folds"].clone()).unwrap_or_default()
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
    let mut value = serde_json::to_value(&report)?;
    value["folds"] = serde_json::to_value(folds)?;
    value["accuracy_mean"] = summary.accuracy_mean.into();
    value["accuracy_std"] = summary.accuracy_std.into();
    Ok(value)
}

/// Subject-independent k-fold cross-validation. The report is rewritten after every fold (marked
/// `"complete": false` until the last), and `resume` reuses the folds of an interrupted run.
pub fn cv(data: &Path, folds: usize, cfg: &TrainConfig, report: &Path, resume: bool) -> Result<()> {
    let dataset = open_dataset(data)?;
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
            "fold {:>2}/{folds}: accuracy {:.2}% on {} test images (best epoch {})",
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
    write_report(report, &value)
}

/// Trains on a dataset (its own training split if it has one, else all of it minus a
/// subject-disjoint validation part) and writes a model folder.
pub fn train_model(data: &Path, cfg: &TrainConfig, out: &Path, resume: bool) -> Result<()> {
    let dataset = open_dataset(data)?;
    let crop = CropConfig { size: cfg.input_size, ..CropConfig::default() };
    let usage: Vec<Option<String>> = dataset.samples.iter().map(|s| s.usage.clone()).collect();
    let (examples, subjects, labels) = examples_of(&dataset, &crop)?;
    let names = label_names(&labels);
    // Validation: 10% of subjects (or samples), never the dataset's test splits.
    let folds = crate::cv::subject_folds(&subjects, 10, cfg.seed);
    let (mut tr, mut val) = (Vec::new(), Vec::new());
    for ((ex, fold), usage) in examples.into_iter().zip(folds).zip(usage) {
        match usage.as_deref() {
            Some("PublicTest") | Some("PrivateTest") => {}
            _ if fold == 0 => val.push(ex),
            _ => tr.push(ex),
        }
    }
    eprintln!("training on {} images, validating on {}", tr.len(), val.len());
    std::fs::create_dir_all(out)?;
    let trained = train(&tr, &val, labels.len(), cfg, Some(&out.join("checkpoints")), resume, false)?;
    let weights = out.join("classifier.safetensors");
    let mut store = burn_store::SafetensorsStore::from_file(&weights).overwrite(true);
    burn_store::ModuleSnapshot::save_into(&trained.net, &mut store).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut info = serde_json::Map::new();
    info.insert("dataset".into(), data.display().to_string().into());
    info.insert("train_config".into(), serde_json::to_value(cfg)?);
    info.insert("history".into(), serde_json::to_value(&trained.history)?);
    let manifest = ModelManifest {
        schema_version: MANIFEST_SCHEMA_VERSION,
        labels,
        input_size: cfg.input_size,
        mean: cfg.mean,
        std: cfg.std,
        crop,
        width: cfg.width,
        info,
    };
    std::fs::write(out.join("manifest.json"), serde_json::to_vec_pretty(&manifest)?)?;
    eprintln!("model written to {} ({} labels: {:?})", out.display(), names.len(), names);
    Ok(())
}

/// Evaluates a saved model folder on a dataset (its test split if it has one).
pub fn evaluate_model(model: &Path, data: &Path, report: &Path) -> Result<()> {
    let manifest: ModelManifest = serde_json::from_slice(
        &std::fs::read(model.join("manifest.json"))
            .with_context(|| format!("reading {}/manifest.json", model.display()))?,
    )?;
    let cfg: TrainConfig =
        manifest.info.get("train_config").and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or(TrainConfig {
            width: manifest.width,
            input_size: manifest.input_size,
            mean: manifest.mean,
            std: manifest.std,
            ..TrainConfig::default()
        });
    let net = load_weights(&model.join("classifier.safetensors"), &cfg, manifest.labels.len(), &Device::flex())?;
    let mut dataset = open_dataset(data)?;
    if dataset.samples.iter().any(|s| s.usage.as_deref() == Some("PublicTest")) {
        dataset.samples.retain(|s| s.usage.as_deref() == Some("PublicTest"));
        eprintln!("evaluating on the PublicTest split: {} images", dataset.samples.len());
    }
    // Map dataset labels onto the model's label order; samples of labels the model lacks are skipped.
    dataset.samples.retain(|s| manifest.labels.contains(&s.label));
    let (examples, _, labels) = examples_of(&dataset, &manifest.crop)?;
    let examples: Vec<Example> = examples
        .into_iter()
        .map(|e| Example { label: manifest.labels.iter().position(|l| *l == labels[e.label]).unwrap_or(0), ..e })
        .collect();
    let names = label_names(&manifest.labels);
    let m = evaluate(&net, &examples, &cfg, &names);
    print_report("hold-out evaluation", &m);
    let mut r = Report::from_confusion(&m);
    r.meta.insert("kind".into(), "hold_out".into());
    r.meta.insert("model".into(), model.display().to_string().into());
    r.meta.insert("dataset".into(), data.display().to_string().into());
    write_report(report, &serde_json::to_value(&r)?)
}

pub fn default_report(name: &str) -> PathBuf {
    PathBuf::from("reports").join(name)
}
