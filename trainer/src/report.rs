//! Reports: the versioned JSON files the dashboard reads, and the tables the commands print.

use std::path::Path;

use anyhow::Result;
use mien::metrics::{ConfusionMatrix, Report};
use mien::Emotion;

/// The labels' names, as reports and model cards list them.
pub fn label_names(labels: &[Emotion]) -> Vec<String> {
    labels.iter().map(|l| l.name().to_string()).collect()
}

/// Writes a report (atomically: a reader never sees half of one) and says where.
pub fn write_report(path: &Path, value: &serde_json::Value) -> Result<()> {
    crate::fsutil::write_atomic(path, &crate::json::pretty(value)?)?;
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
