//! The README's table of how good the shipped model is, against the reports it is written from:
//! a report re-measured without the README, or the README edited by hand, fails here.

use mien_trainer::results::{table, with_table};

#[test]
fn the_readme_results_table_is_the_one_the_reports_give() {
    let root = mien_trainer::repo_root();
    let table = table(&root.join("reports")).unwrap();
    let fer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("reports/fer2013_publictest.json")).unwrap()).unwrap();
    let headline = format!("**{:.1} %**", 100.0 * fer["accuracy"].as_f64().unwrap());
    assert!(table.contains(&headline), "the FER2013 row shows the report's accuracy, {headline}:\n{table}");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        with_table(&readme, &table).unwrap() == readme,
        "README.md's results table differs from reports/: run `cargo xtask trainer results --readme README.md`"
    );
}
