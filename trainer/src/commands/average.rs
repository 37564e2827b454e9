//! `average`: a model folder from the mean of a run's last epochs.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::examples::{training_split, TrainingSplit};
use crate::lineage::{lineage, TRAINER};
use crate::model_card::write_model;

/// Write a model folder with the mean of a run's weights over its last epochs (stochastic
/// weight averaging; the run must have been trained with --keep-epochs), batch norm measured
/// again on training batches. Prints the validation accuracy of the mean and of the epochs.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub run: super::RunArgs,
    /// The epochs to average, first-last (1-based, inclusive), e.g. 51-60.
    #[arg(long, value_parser = parse_epochs)]
    pub epochs: (usize, usize),
    /// Training batches that measure batch norm's statistics again.
    #[arg(long, default_value_t = 200)]
    pub bn_batches: usize,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    average_model(&a.run.data, &a.run.checkpoints, a.epochs, a.bn_batches, &a.out)
}

/// `A-B` → (A, B): a range of epochs.
fn parse_epochs(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s.split_once('-').ok_or_else(|| format!("{s:?} is not a range of epochs such as 51-60"))?;
    let n = |x: &str| x.trim().parse::<usize>().map_err(|_| format!("{x:?} in {s:?} is not an epoch number"));
    let (a, b) = (n(a)?, n(b)?);
    if a == 0 || a > b {
        return Err(format!("{s:?}: epochs count from 1, the first no later than the last"));
    }
    Ok((a, b))
}

/// Writes a model folder with the mean of a run's weights after epochs `first..=last` (kept by
/// `train --keep-epochs`), batch norm measured again on `bn_batches` training batches. Prints the
/// validation accuracy of the mean beside the run's own epochs': a mean that does worse than the
/// run's best epoch on validation is written all the same, and the numbers say so.
fn average_model(
    data: &Path,
    checkpoints: &Path,
    (first, last): (usize, usize),
    bn_batches: usize,
    out: &Path,
) -> Result<()> {
    let (cfg, num_classes, history, _) = crate::train::read_checkpoint(checkpoints)?;
    // A run that trained a later part of a schedule numbers its epochs on from the earlier ones.
    let done = cfg.schedule_done;
    anyhow::ensure!(
        first > done && first <= last && last <= done + history.len(),
        "--epochs {first}-{last}: the run in {} has finished epochs {} to {}",
        checkpoints.display(),
        done + 1,
        done + history.len()
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
    for h in &history[first - 1 - done..last - done] {
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
    crate::fsutil::write_atomic(&manifest_path, &crate::json::pretty(&manifest)?)?;
    Ok(())
}
