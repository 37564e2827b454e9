//! Subject-independent evaluation: k folds grouped by subject, so no person is in both the
//! training and the test part of a fold (the 3 frames of a CK+ sequence are near-duplicates; a
//! random split would measure memory, not recognition).

use std::collections::BTreeMap;

use anyhow::Result;
use mien::metrics::{ConfusionMatrix, Report};

use crate::augment::SplitMix64;
use crate::train::{evaluate, evaluate_with, train, Example, Inference, TrainConfig};

/// Assigns each sample to one of `k` folds, whole subjects at a time, balancing sample counts.
/// Samples without a subject form their own group. Deterministic for a given seed.
pub fn subject_folds(subjects: &[Option<String>], k: usize, seed: u64) -> Vec<usize> {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, s) in subjects.iter().enumerate() {
        let key = s.clone().unwrap_or_else(|| format!("#sample{i}"));
        groups.entry(key).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = groups.into_values().collect();
    let mut rng = SplitMix64::new(seed);
    rng.shuffle(&mut groups);
    // Largest groups first (stable after the shuffle), each to the currently smallest fold.
    groups.sort_by_key(|g| std::cmp::Reverse(g.len()));
    let mut sizes = vec![0usize; k.max(1)];
    let mut fold_of = vec![0usize; subjects.len()];
    for g in groups {
        let f = (0..sizes.len()).min_by_key(|&f| (sizes[f], f)).unwrap_or(0);
        sizes[f] += g.len();
        for i in g {
            fold_of[i] = f;
        }
    }
    fold_of
}

/// What a set of fold reports adds up to.
pub struct Summary {
    /// Confusion matrix summed over the folds.
    pub pooled: ConfusionMatrix,
    pub accuracy_mean: f64,
    /// Population standard deviation of the fold accuracies.
    pub accuracy_std: f64,
}

/// Pools the folds' confusion matrices and summarises their accuracies.
pub fn summarise(labels: &[String], folds: &[Report]) -> Summary {
    let mut pooled = ConfusionMatrix::new(labels.to_vec());
    for r in folds {
        pooled.merge(&ConfusionMatrix { labels: labels.to_vec(), counts: r.confusion_matrix.clone() });
    }
    let n = folds.len().max(1) as f64;
    let mean = folds.iter().map(|r| r.accuracy).sum::<f64>() / n;
    let std = (folds.iter().map(|r| (r.accuracy - mean).powi(2)).sum::<f64>() / n).sqrt();
    Summary { pooled, accuracy_mean: mean, accuracy_std: std }
}

/// Runs k-fold CV: fold `f` is the test set; of the other folds, a tenth of the subjects is the
/// validation set for early stopping and the rest the training set. Folds in `done` (finished by
/// an interrupted run with the same data, settings and seed) are kept as they are. With
/// `no_validation`, the validation subjects train too. Returns one
/// report per fold.
pub fn cross_validate(
    examples: &[Example],
    subjects: &[Option<String>],
    labels: &[String],
    k: usize,
    cfg: &TrainConfig,
    done: Vec<Report>,
    mut progress: impl FnMut(usize, &[Report]),
) -> Result<Vec<Report>> {
    anyhow::ensure!(k >= 2, "cross-validation needs at least 2 folds");
    anyhow::ensure!(done.len() <= k, "{} folds already done but only {k} asked for", done.len());
    let fold_of = subject_folds(subjects, k, cfg.seed);
    let mut folds = done;
    for f in folds.len()..k {
        let test: Vec<Example> =
            examples.iter().zip(&fold_of).filter(|(_, &fo)| fo == f).map(|(e, _)| e.clone()).collect();
        // Validation for early stopping: a tenth of the remaining subjects, never test subjects.
        let rest: Vec<usize> = (0..examples.len()).filter(|&i| fold_of[i] != f).collect();
        let rest_subjects: Vec<Option<String>> = rest.iter().map(|&i| subjects[i].clone()).collect();
        let inner = subject_folds(&rest_subjects, 10, cfg.seed ^ 0x5EED);
        let (mut tr, mut val) = (Vec::new(), Vec::new());
        for (&i, &part) in rest.iter().zip(&inner) {
            if part == 0 && !cfg.no_validation {
                val.push(examples[i].clone())
            } else {
                tr.push(examples[i].clone())
            }
        }
        let fold_cfg = TrainConfig { seed: cfg.seed.wrapping_add(f as u64), ..cfg.clone() };
        let trained = train(&tr, &val, labels.len(), &fold_cfg, None, false, true)?;
        let m = evaluate(&trained.net, &test, cfg, labels);
        let mut report = Report::from_confusion(&m);
        report.meta.insert("fold".into(), (f + 1).into());
        report.meta.insert("train_images".into(), tr.len().into());
        report.meta.insert("val_images".into(), val.len().into());
        report.meta.insert("test_images".into(), test.len().into());
        report.meta.insert("best_epoch".into(), trained.best_epoch.into());
        // The report's numbers average each crop with its mirror image, as the app does; the
        // accuracy without that is kept to show what it adds.
        report.meta.insert("flip_average".into(), true.into());
        let plain = evaluate_with(&trained.net, &test, cfg, labels, Inference::Plain).accuracy();
        report.meta.insert("accuracy_without_flip_average".into(), plain.into());
        report.meta.insert("history".into(), serde_json::to_value(&trained.history)?);
        folds.push(report);
        progress(f, &folds);
    }
    Ok(folds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_subject_is_in_two_folds_and_folds_are_balanced() {
        let subjects: Vec<Option<String>> =
            (0..300).map(|i| Some(format!("S{:03}", i % 37))).chain((0..5).map(|_| None)).collect();
        let folds = subject_folds(&subjects, 10, 42);
        let mut fold_of_subject: BTreeMap<&str, usize> = BTreeMap::new();
        for (s, f) in subjects.iter().zip(&folds) {
            if let Some(s) = s {
                assert_eq!(*fold_of_subject.entry(s).or_insert(*f), *f, "{s} split across folds");
            }
        }
        let mut sizes = [0usize; 10];
        for &f in &folds {
            sizes[f] += 1;
        }
        assert!(sizes.iter().all(|&n| (20..=45).contains(&n)), "{sizes:?}");
        assert_eq!(folds, subject_folds(&subjects, 10, 42), "deterministic");
    }
}
