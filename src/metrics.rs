//! Classification metrics and the versioned evaluation report: written by the trainer, rendered by
//! the dashboard. The schema lives here once, so both sides agree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the report JSON. Bump on any incompatible change.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// Counts of (true label, predicted label) pairs over a fixed label list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    pub labels: Vec<String>,
    /// `counts[true][predicted]`, in `labels` order.
    pub counts: Vec<Vec<u64>>,
}

impl ConfusionMatrix {
    pub fn new(labels: Vec<String>) -> Self {
        let n = labels.len();
        ConfusionMatrix { labels, counts: vec![vec![0; n]; n] }
    }

    /// Records one prediction; indices outside the label list are ignored and reported as false.
    pub fn add(&mut self, truth: usize, predicted: usize) -> bool {
        match self.counts.get_mut(truth).and_then(|row| row.get_mut(predicted)) {
            Some(c) => {
                *c += 1;
                true
            }
            None => false,
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    pub fn correct(&self) -> u64 {
        (0..self.labels.len()).map(|i| self.counts[i][i]).sum()
    }

    pub fn accuracy(&self) -> f64 {
        ratio(self.correct(), self.total())
    }

    /// Adds another matrix over the same labels (pooling folds).
    pub fn merge(&mut self, other: &ConfusionMatrix) {
        for (row, orow) in self.counts.iter_mut().zip(&other.counts) {
            for (c, o) in row.iter_mut().zip(orow) {
                *c += o;
            }
        }
    }

    /// Precision, recall, F1 and support of each label.
    pub fn per_class(&self) -> BTreeMap<String, ClassMetrics> {
        let n = self.labels.len();
        (0..n)
            .map(|i| {
                let tp = self.counts[i][i];
                let support: u64 = self.counts[i].iter().sum();
                let predicted: u64 = (0..n).map(|t| self.counts[t][i]).sum();
                let precision = ratio(tp, predicted);
                let recall = ratio(tp, support);
                let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
                (self.labels[i].clone(), ClassMetrics { precision, recall, f1, support })
            })
            .collect()
    }

    /// Unweighted mean of the F1 of the labels that occur in the truth (support > 0).
    pub fn macro_f1(&self) -> f64 {
        let per = self.per_class();
        let present: Vec<f64> = per.values().filter(|m| m.support > 0).map(|m| m.f1).collect();
        if present.is_empty() {
            0.0
        } else {
            present.iter().sum::<f64>() / present.len() as f64
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

/// One evaluation, as the trainer writes it and the dashboard reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub labels: Vec<String>,
    /// Fraction of correct predictions.
    pub accuracy: f64,
    /// Rows = true label, columns = predicted, in `labels` order.
    pub confusion_matrix: Vec<Vec<u64>>,
    pub per_class: BTreeMap<String, ClassMetrics>,
    pub macro_f1: f64,
    /// What was evaluated, on what, and how to reproduce it (free-form key/values).
    #[serde(default)]
    pub meta: BTreeMap<String, serde_json::Value>,
}

/// Why a report file cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("the report is not valid JSON of schema {REPORT_SCHEMA_VERSION}: {0}")]
    Json(String),
    #[error("the report is inconsistent: {0}")]
    Inconsistent(String),
}

impl Report {
    /// Parses a report file and checks that its parts agree (matrix shape = labels, fractions in
    /// 0–1, per-class entries for known labels), so a reader can index it without checks.
    pub fn from_json(bytes: &[u8]) -> Result<Report, ReportError> {
        let r: Report = serde_json::from_slice(bytes).map_err(|e| ReportError::Json(e.to_string()))?;
        r.validate()?;
        Ok(r)
    }

    /// Same as [`Report::from_json`] for an already parsed value (a cross-validation report's
    /// fold, or the dashboard's fetched JSON).
    pub fn from_value(v: &serde_json::Value) -> Result<Report, ReportError> {
        let r = Report::deserialize(v).map_err(|e| ReportError::Json(e.to_string()))?;
        r.validate()?;
        Ok(r)
    }

    pub fn validate(&self) -> Result<(), ReportError> {
        let bad = |what: String| Err(ReportError::Inconsistent(what));
        if self.schema_version != REPORT_SCHEMA_VERSION {
            return bad(format!("schema_version {} (this build reads {REPORT_SCHEMA_VERSION})", self.schema_version));
        }
        let n = self.labels.len();
        if n == 0 {
            return bad("no labels".into());
        }
        for (i, l) in self.labels.iter().enumerate() {
            if self.labels[..i].contains(l) {
                return bad(format!("label `{l}` is listed twice"));
            }
        }
        if self.confusion_matrix.len() != n || self.confusion_matrix.iter().any(|row| row.len() != n) {
            return bad(format!("the confusion matrix is not {n}×{n} (one row and column per label)"));
        }
        for (name, x) in [("accuracy", self.accuracy), ("macro_f1", self.macro_f1)] {
            if !(0.0..=1.0).contains(&x) {
                return bad(format!("{name} {x} is not a fraction between 0 and 1"));
            }
        }
        for (label, c) in &self.per_class {
            if !self.labels.contains(label) {
                return bad(format!("per_class has `{label}`, which is not among the labels"));
            }
            for (name, x) in [("precision", c.precision), ("recall", c.recall), ("f1", c.f1)] {
                if !(0.0..=1.0).contains(&x) {
                    return bad(format!("{label} {name} {x} is not a fraction between 0 and 1"));
                }
            }
        }
        let total = self.confusion_matrix.iter().flatten().try_fold(0u64, |a, &c| a.checked_add(c));
        if total.is_none() {
            return bad("the confusion matrix counts overflow".into());
        }
        Ok(())
    }

    pub fn from_confusion(m: &ConfusionMatrix) -> Report {
        Report {
            schema_version: REPORT_SCHEMA_VERSION,
            labels: m.labels.clone(),
            accuracy: m.accuracy(),
            confusion_matrix: m.counts.clone(),
            per_class: m.per_class(),
            macro_f1: m.macro_f1(),
            meta: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_class_metrics_by_hand() {
        // truth a: 3 (2 right, 1 as b); truth b: 2 (1 right, 1 as a); truth c: none.
        let mut m = ConfusionMatrix::new(vec!["a".into(), "b".into(), "c".into()]);
        for (t, p) in [(0, 0), (0, 0), (0, 1), (1, 1), (1, 0)] {
            assert!(m.add(t, p));
        }
        assert!(!m.add(3, 0));
        assert_eq!(m.total(), 5);
        assert!((m.accuracy() - 0.6).abs() < 1e-12);
        let per = m.per_class();
        assert!((per["a"].precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((per["a"].recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((per["b"].precision - 0.5).abs() < 1e-12);
        assert_eq!(per["c"].support, 0);
        // Macro-F1 over the labels present in the truth: (2/3 + 1/2) / 2.
        assert!((m.macro_f1() - (2.0 / 3.0 + 0.5) / 2.0).abs() < 1e-12);
        let r = Report::from_confusion(&m);
        let json = serde_json::to_value(&r).unwrap();
        for key in ["schema_version", "labels", "accuracy", "confusion_matrix", "per_class", "macro_f1"] {
            assert!(json.get(key).is_some(), "{key}");
        }
    }
}
