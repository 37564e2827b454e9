//! `cv`: subject-independent k-fold cross-validation.

use std::path::{Path, PathBuf};

use anyhow::Result;
use mien::align::CropConfig;
use mien::metrics::Report;

use crate::cv::{cross_validate, summarise};
use crate::datasets::Dataset;
use crate::examples::{examples_of, open_for_run};
use crate::lineage::TRAINER;
use crate::report::{label_names, print_report, write_report};
use crate::train::TrainConfig;

/// Subject-independent k-fold cross-validation (folds grouped by subject id).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Dataset folder or CSV, in any supported layout.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value_t = 10)]
    pub folds: usize,
    /// JSON report to write.
    #[arg(long, default_value = "reports/cv.json")]
    pub report: PathBuf,
    /// Reuse the folds already in --report from an interrupted run with the same settings.
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub train: TrainConfig,
}

pub fn run(a: Args) -> Result<()> {
    cv(&a.data, a.folds, &a.train, &a.report, a.resume)
}

/// Folds already in a partial report at `report` written by the same run settings.
fn finished_folds(report: &Path, cfg: &TrainConfig, folds: usize, labels: &[String]) -> Vec<Report> {
    let Ok(bytes) = std::fs::read(report) else { return Vec::new() };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else { return Vec::new() };
    let same = crate::json::same_as_written(&v["meta"]["train_config"], &serde_json::to_value(cfg).unwrap_or_default())
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
        format!("{TRAINER} cv --data {} --folds {k} --report <file>{}", dataset.root.display(), cfg.to_args()).into(),
    );
    let mut value = serde_json::to_value(&report)?;
    value["folds"] = serde_json::to_value(folds)?;
    value["accuracy_mean"] = summary.accuracy_mean.into();
    value["accuracy_std"] = summary.accuracy_std.into();
    Ok(value)
}

/// Subject-independent k-fold cross-validation. The report is rewritten after every fold (marked
/// `"complete": false` until the last), and `resume` reuses the folds of an interrupted run.
fn cv(data: &Path, folds: usize, cfg: &TrainConfig, report: &Path, resume: bool) -> Result<()> {
    let dataset = open_for_run(data, cfg)?;
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
    } else if resume && report.exists() {
        eprintln!(
            "--resume: {} holds no folds of a run with these settings (dataset labels, --folds, training options); starting over",
            report.display()
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use mien::metrics::ConfusionMatrix;

    /// A report written as `cv` writes it (floats rounded) gives its folds back to a run with
    /// the same settings, and none to a run with others.
    #[test]
    fn resume_reuses_the_folds_of_a_report_written_with_the_same_settings() {
        let cfg = TrainConfig { epochs: 24, lr: 0.001, label_smoothing: 0.05, ..TrainConfig::default() };
        let names = vec!["happiness".to_string(), "sadness".to_string()];
        let mut m = ConfusionMatrix::new(names.clone());
        m.counts[0][0] = 3;
        m.counts[1][0] = 1;
        let mut fold = Report::from_confusion(&m);
        fold.meta.insert("flip_average".into(), true.into());
        let mut value = serde_json::to_value(Report::from_confusion(&m)).unwrap();
        value["meta"]["train_config"] = serde_json::to_value(&cfg).unwrap();
        value["meta"]["folds_requested"] = 10.into();
        value["folds"] = serde_json::to_value([fold]).unwrap();
        let path = std::env::temp_dir().join(format!("mien-cv-resume-{}.json", std::process::id()));
        write_report(&path, &value).unwrap();
        assert_eq!(finished_folds(&path, &cfg, 10, &names).len(), 1);
        assert!(finished_folds(&path, &TrainConfig { lr: 0.002, ..cfg.clone() }, 10, &names).is_empty());
        assert!(finished_folds(&path, &cfg, 5, &names).is_empty());
        std::fs::remove_file(&path).ok();
    }
}
