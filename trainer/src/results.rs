//! The README's table of how good the shipped model is, written from the report files, so that
//! the two cannot disagree (`mien-trainer results`; `trainer/tests/results.rs` fails when they do).

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

/// The lines around the table in the README.
pub const BEGIN: &str = "<!-- results:begin -->";
pub const END: &str = "<!-- results:end -->";

fn read(reports: &Path, name: &str) -> Result<Value> {
    let path = reports.join(name);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not a JSON report", path.display()))
}

fn pct(v: &Value) -> String {
    v.as_f64().map(|x| format!("{:.1} %", 100.0 * x)).unwrap_or_else(|| "–".into())
}

fn f1(v: &Value) -> String {
    v.as_f64().map(|x| format!("{x:.3}")).unwrap_or_else(|| "–".into())
}

/// 3589 → "3,589".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Images a report scored: the sum of its confusion matrix.
fn images(report: &Value) -> String {
    let total: u64 = report["confusion_matrix"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(Value::as_u64)
        .sum();
    thousands(total)
}

/// The table, in Markdown, from the reports in `reports` (the repository's `reports/`).
pub fn table(reports: &Path) -> Result<String> {
    let fer = read(reports, "fer2013_publictest.json")?;
    let ferplus = read(reports, "ferplus_publictest.json")?;
    let ckplus = read(reports, "ckplus_shipped.json")?;
    let cv = read(reports, "ckplus_cv.json")?;
    let crop = read(reports, "crop_check.json")?;
    let split = fer["meta"]["split"].as_str().unwrap_or("PublicTest").to_string();
    let mut rows = vec![
        "| evaluation (report in `reports/`) | images | accuracy | macro-F1 |".to_string(),
        "|---|---:|---:|---:|".to_string(),
        format!(
            "| FER2013 {split}, dataset crops (`fer2013_publictest.json`) | {} | **{}** | {} |",
            images(&fer),
            pct(&fer["accuracy"]),
            f1(&fer["macro_f1"])
        ),
    ];
    let clean = &fer["meta"]["without_training_copies"];
    if clean.is_object() {
        rows.push(format!(
            "| the same without the {} test images that FER2013's training split holds a copy of | {} | {} | {} |",
            clean["images_left_out"].as_u64().map(thousands).unwrap_or_default(),
            clean["images"].as_u64().map(thousands).unwrap_or_default(),
            pct(&clean["accuracy"]),
            f1(&clean["macro_f1"])
        ));
    }
    rows.push(format!(
        "| {split} with FERPlus's majority labels (`ferplus_publictest.json`) | {} | {} | {} |",
        images(&ferplus),
        pct(&ferplus["accuracy"]),
        f1(&ferplus["macro_f1"])
    ));
    rows.push(format!(
        "| CK+48 cross-dataset: no CK+ subject seen in training (`ckplus_shipped.json`) | {} | {} | {} |",
        images(&ckplus),
        pct(&ckplus["accuracy"]),
        f1(&ckplus["macro_f1"])
    ));
    rows.push(format!(
        "| CK+48, subject-grouped {}-fold cross-validation, fine-tuned per fold (`ckplus_cv.json`) | {} | {} ± {:.1} | {} |",
        cv["meta"]["folds_requested"].as_u64().unwrap_or(0),
        images(&cv),
        pct(&cv["accuracy_mean"]),
        100.0 * cv["accuracy_std"].as_f64().unwrap_or(f64::NAN),
        f1(&cv["macro_f1"])
    ));
    let r = &crop["result"];
    let checked = r["images"].as_u64().unwrap_or(0);
    let found = r["detected"].as_u64().unwrap_or(0) as f64 / checked.max(1) as f64;
    rows.push(format!(
        "| crop check: {split} faces pasted into {}×{} frames, their dataset crops (`crop_check.json`) | {} | {} | |",
        crop["canvas"],
        crop["canvas"],
        thousands(checked),
        pct(&r["direct_accuracy"])
    ));
    rows.push(format!(
        "| the same faces through the app: detection ({:.1} % found) and its crop | {} | {} | |",
        100.0 * found,
        thousands(checked),
        pct(&r["pipeline_accuracy"])
    ));
    let bare = &crop["bare"];
    if bare.is_object() {
        let images = bare["images"].as_u64().unwrap_or(0);
        let found = bare["detected"].as_u64().unwrap_or(0) as f64 / images.max(1) as f64;
        rows.push(format!(
            "| the same faces as they are (the dataset's image, no frame around it) through the app ({:.1} % found) | {} | {} | |",
            100.0 * found,
            thousands(images),
            pct(&bare["pipeline_accuracy"])
        ));
    }
    let mut classes: Vec<(&String, f64)> = fer["per_class"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, m)| Some((name, m["f1"].as_f64()?)))
        .collect();
    classes.sort_by(|a, b| b.1.total_cmp(&a.1));
    let named = |c: &[(&String, f64)]| c.iter().map(|(n, f)| format!("{n} (F1 {f:.2})")).collect::<Vec<_>>().join(", ");
    if classes.len() >= 4 {
        let worst: Vec<_> = classes[classes.len() - 2..].iter().rev().cloned().collect();
        rows.push(String::new());
        rows.push(format!("On FER2013 {split}, recognised best: {}; worst: {}.", named(&classes[..2]), named(&worst)));
    }
    Ok(rows.join("\n") + "\n")
}

/// `readme` with the text between [`BEGIN`] and [`END`] replaced by `table`.
pub fn with_table(readme: &str, table: &str) -> Result<String> {
    let start = readme.find(BEGIN).with_context(|| format!("the README has no {BEGIN} line"))? + BEGIN.len();
    let end = readme[start..].find(END).with_context(|| format!("the README has no {END} line after {BEGIN}"))? + start;
    Ok(format!("{}\n{}{}", &readme[..start], table, &readme[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(thousands(7), "7");
        assert_eq!(thousands(927), "927");
        assert_eq!(thousands(3589), "3,589");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn the_table_replaces_only_what_is_between_the_markers() {
        let readme = format!("a\n{BEGIN}\nold\n{END}\nb\n");
        assert_eq!(with_table(&readme, "new\n").unwrap(), format!("a\n{BEGIN}\nnew\n{END}\nb\n"));
        assert!(with_table("no markers", "x").is_err());
    }
}
