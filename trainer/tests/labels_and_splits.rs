//! What a command scores and trains on is what it says: `evaluate` scores a dataset's own test
//! split and names it (never its training images as a hold-out), and a labels-override CSV
//! (`--labels`) reaches `evaluate`, `train`, `cv` and `tune` and is recorded in what they write.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::{dataset, TempDir};

fn trainer(args: &[&str], paths: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mien-trainer"));
    c.args(args).env("RAYON_NUM_THREADS", "1");
    for (flag, path) in paths {
        c.arg(flag).arg(path);
    }
    c.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Overrides half of the "sad" images of [`dataset`] (ids as the trainer names them) to happiness.
fn sad_to_happy(csv: &Path) {
    let lines: Vec<String> =
        (0..24).step_by(2).map(|i| format!("sad/S{:03}_001_{i:08}.png,happiness", i % 12)).collect();
    std::fs::write(csv, format!("id,label\n{}\n", lines.join("\n"))).unwrap();
}

/// A FER2013 folder layout (`train/`, `test/`) whose `test/` holds PrivateTest images only, as a
/// download that kept one of the two test splits.
fn private_test_only(root: &Path) {
    dataset(&root.join("train"));
    for (label, base) in [("happy", 40u8), ("sad", 140u8)] {
        let dir = root.join("test").join(label);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..5u8 {
            let img = image::GrayImage::from_fn(48, 48, |x, y| image::Luma([base + i + ((x + y) % 9) as u8]));
            img.save(dir.join(format!("PrivateTest_{i:04}.png"))).unwrap();
        }
    }
}

#[test]
fn evaluate_scores_the_test_split_a_folder_layout_has_and_names_it() {
    let tmp = TempDir::new("eval-private");
    let data = tmp.0.join("fer");
    private_test_only(&data);
    let report = tmp.0.join("report.json");
    let out = trainer(&["evaluate"], &[("--data", &data), ("--report", &report)]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("evaluating on PrivateTest: 10 images"), "{err}");
    let r = json(&report);
    assert_eq!(r["meta"]["split"], "PrivateTest");
    let scored: u64 = r["confusion_matrix"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(scored, 10, "only the test images, none of the 72 training ones");

    // A split the dataset lacks is refused, by name, and leaves the report as it was.
    let before = std::fs::read(&report).unwrap();
    let out = trainer(&["evaluate", "--split", "public"], &[("--data", &data), ("--report", &report)]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("has no PublicTest image"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&report).unwrap(), before);
}

#[test]
fn evaluate_on_a_dataset_without_a_test_split_says_it_scores_every_image_and_applies_labels() {
    let tmp = TempDir::new("eval-labels");
    let data = tmp.0.join("faces");
    dataset(&data);
    let csv = tmp.0.join("overrides.csv");
    sad_to_happy(&csv);
    let report = tmp.0.join("report.json");
    let out = trainer(&["evaluate"], &[("--data", &data), ("--report", &report), ("--labels", &csv)]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("no test split; scoring every image"), "{err}");
    assert!(err.contains("12 labels changed"), "{err}");
    let r = json(&report);
    assert_eq!(r["meta"]["split"], "all");
    assert_eq!(r["meta"]["labels_override"], csv.display().to_string());
    assert_eq!(r["per_class"]["happiness"]["support"], 36);
    assert_eq!(r["per_class"]["sadness"]["support"], 12);
    assert_eq!(r["per_class"]["surprise"]["support"], 24);

    // An id that is not in the dataset is refused, naming the file and the line.
    std::fs::write(&csv, "id,label\nsad/S000_001_00000000.png,anger\nsad/nobody.png,anger\n").unwrap();
    let out = trainer(&["evaluate"], &[("--data", &data), ("--report", &report), ("--labels", &csv)]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("overrides.csv") && err.contains("line 3") && err.contains("sad/nobody.png"), "{err}");
}

#[test]
fn train_cv_and_tune_train_on_the_overridden_labels_and_record_them() {
    let tmp = TempDir::new("train-labels");
    let data = tmp.0.join("faces");
    dataset(&data);
    let csv = tmp.0.join("overrides.csv");
    sad_to_happy(&csv);
    let quick = ["--epochs", "1", "--batch-size", "8", "--patience", "0", "--seed", "3"];
    let csv_text = csv.display().to_string();

    let model = tmp.0.join("model");
    let out = trainer(&[&["train"], &quick[..]].concat(), &[("--data", &data), ("--out", &model), ("--labels", &csv)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info = &json(&model.join("manifest.json"))["info"];
    assert_eq!(info["train_config"]["labels"], csv_text);
    let training_data = info["training_data"].as_str().unwrap();
    assert!(training_data.contains(&format!("labels overridden by {csv_text}")), "{training_data}");
    assert!(info["reproduce"].as_str().unwrap().contains(&format!("--labels {csv_text}")), "{}", info["reproduce"]);
    assert!(!info["weaknesses"].as_str().unwrap().contains("FER2013"), "{}", info["weaknesses"]);

    let report = tmp.0.join("cv.json");
    let out = trainer(
        &[&["cv", "--folds", "2"], &quick[..]].concat(),
        &[("--data", &data), ("--report", &report), ("--labels", &csv)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r = json(&report);
    assert_eq!(r["meta"]["train_config"]["labels"], csv_text);
    assert_eq!(r["per_class"]["sadness"]["support"], 12, "cross-validation scores every image once");

    let board = tmp.0.join("tune.json");
    let out = trainer(
        &[&["tune", "--trials", "1", "--folds", "2"], &quick[..]].concat(),
        &[("--data", &data), ("--leaderboard", &board), ("--labels", &csv)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("12 labels changed"), "{}", stderr(&out));
    assert_eq!(json(&board)["base"]["labels"], csv_text);
}
