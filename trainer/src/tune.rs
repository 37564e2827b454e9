//! `mien-trainer tune`: the study's tuning step, done honestly — a bounded random search over
//! learning rate, width, dropout, augmentation strength and label smoothing, each trial scored by
//! its mean accuracy on subject-grouped validation folds of the training data only (a dataset's
//! own test split is never touched). The leaderboard is rewritten after every trial, and a run
//! with the same seed resumes where it stopped.

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::augment::SplitMix64;
use crate::cv::subject_folds;
use crate::examples::{examples_of, open_for_run};
use crate::train::{evaluate, train, Example, TrainConfig};

/// The search space; every trial draws each setting independently.
const LR: (f64, f64) = (3e-4, 5e-3);
const WIDTHS: [f64; 4] = [0.75, 1.0, 1.25, 1.5];
const DROPOUT: (f64, f64) = (0.1, 0.5);
const AUGMENT: (f32, f32) = (0.3, 1.0);
const SMOOTHING: (f32, f32) = (0.0, 0.1);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trial {
    pub trial: usize,
    pub config: TrainConfig,
    /// Validation accuracy of each fold.
    pub fold_accuracy: Vec<f64>,
    pub mean_accuracy: f64,
    pub seconds: f64,
}

/// The `n`-th trial's settings: a pure function of the seed, so a resumed search draws the same.
pub fn trial_config(base: &TrainConfig, seed: u64, n: usize) -> TrainConfig {
    let mut rng = SplitMix64::new(seed ^ (n as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F));
    let uniform = |rng: &mut SplitMix64, (lo, hi): (f64, f64)| lo + (hi - lo) * rng.unit() as f64;
    let lr = (LR.0.ln() + (LR.1.ln() - LR.0.ln()) * rng.unit() as f64).exp();
    TrainConfig {
        lr,
        width: WIDTHS[rng.below(WIDTHS.len())],
        dropout: uniform(&mut rng, DROPOUT),
        augment: uniform(&mut rng, (AUGMENT.0 as f64, AUGMENT.1 as f64)) as f32,
        label_smoothing: uniform(&mut rng, (SMOOTHING.0 as f64, SMOOTHING.1 as f64)) as f32,
        ..base.clone()
    }
}

fn print(board: &[Trial]) {
    println!(
        "{:>4} {:>9} {:>9} {:>6} {:>8} {:>8} {:>10}",
        "rank", "val acc", "lr", "width", "dropout", "augment", "smoothing"
    );
    for (i, t) in board.iter().enumerate() {
        println!(
            "{:>4} {:>8.2}% {:>9.2e} {:>6.2} {:>8.2} {:>8.2} {:>10.3}",
            i + 1,
            100.0 * t.mean_accuracy,
            t.config.lr,
            t.config.width,
            t.config.dropout,
            t.config.augment,
            t.config.label_smoothing
        );
    }
}

/// Runs `trials` trials (those already in `leaderboard` from a run with the same seed and base
/// settings are kept) and writes the leaderboard, best first.
pub fn run(data: &Path, trials: usize, folds: usize, base: &TrainConfig, leaderboard: &Path) -> Result<()> {
    anyhow::ensure!(folds >= 2, "tuning needs at least 2 validation folds");
    let dataset = open_for_run(data, base)?;
    let crop = mien::CropConfig { size: base.input_size, ..mien::CropConfig::default() };
    let usage: Vec<Option<String>> = dataset.samples.iter().map(|s| s.usage.clone()).collect();
    let (examples, subjects, labels) = examples_of(&dataset, &crop)?;
    // Only the training part: a dataset's test splits play no part in choosing settings.
    let (examples, subjects): (Vec<Example>, Vec<Option<String>>) = examples
        .into_iter()
        .zip(subjects)
        .zip(usage)
        .filter(|(_, u)| !matches!(u.as_deref(), Some("PublicTest") | Some("PrivateTest")))
        .map(|(pair, _)| pair)
        .unzip();
    let names: Vec<String> = labels.iter().map(|l| l.name().to_string()).collect();
    let fold_of = subject_folds(&subjects, folds, base.seed);

    let mut board: Vec<Trial> = std::fs::read(leaderboard)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .filter(|v| {
            crate::json::same_as_written(&v["base"], &serde_json::to_value(base).unwrap_or_default())
                && v["folds"] == folds
        })
        .and_then(|v| serde_json::from_value(v["trials"].clone()).ok())
        .unwrap_or_default();
    if !board.is_empty() {
        eprintln!("resuming: {} of {trials} trials already in {}", board.len(), leaderboard.display());
    }
    for n in 0..trials {
        if board.iter().any(|t| t.trial == n) {
            continue;
        }
        let cfg = trial_config(base, base.seed, n);
        let started = std::time::Instant::now();
        let mut accs = Vec::new();
        for f in 0..folds {
            let (mut tr, mut val) = (Vec::new(), Vec::new());
            for (e, &fo) in examples.iter().zip(&fold_of) {
                if fo == f {
                    val.push(e.clone());
                } else {
                    tr.push(e.clone());
                }
            }
            // No early stopping inside a trial: the validation fold is what is being scored.
            let fold_cfg = TrainConfig { patience: 0, ..cfg.clone() };
            let trained = train(&tr, &[], labels.len(), &fold_cfg, None, false, true)?;
            accs.push(evaluate(&trained.net, &val, &fold_cfg, &names).accuracy());
        }
        let mean = accs.iter().sum::<f64>() / accs.len() as f64;
        eprintln!(
            "trial {:>2}/{trials}: {:.2}% (lr {:.2e}, width {}, dropout {:.2}, augment {:.2}, smoothing {:.3}) in {:.0} s",
            n + 1,
            100.0 * mean,
            cfg.lr,
            cfg.width,
            cfg.dropout,
            cfg.augment,
            cfg.label_smoothing,
            started.elapsed().as_secs_f64()
        );
        board.push(Trial {
            trial: n,
            config: cfg,
            fold_accuracy: accs,
            mean_accuracy: mean,
            seconds: started.elapsed().as_secs_f64(),
        });
        board.sort_by(|a, b| b.mean_accuracy.total_cmp(&a.mean_accuracy));
        write(leaderboard, data, base, folds, &board)?;
    }
    print(&board);
    Ok(())
}

fn write(path: &Path, data: &Path, base: &TrainConfig, folds: usize, board: &[Trial]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let value = serde_json::json!({
        "schema_version": 1,
        "kind": "tuning_leaderboard",
        "dataset": data.display().to_string(),
        "scored_on": "mean accuracy over subject-grouped validation folds of the training data",
        "folds": folds,
        "base": base,
        "trials": board,
    });
    crate::fsutil::write_atomic(path, &crate::json::pretty(&value)?)
}
