//! A learning-rate schedule longer than one run may last, trained as runs that each take a part
//! of it (`--schedule-epochs`, `--schedule-done`): the later run goes on from the earlier one's
//! model folder, numbers its epochs on from it, says in its manifest how to reproduce both, and
//! its kept epochs average under their own numbers.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::{dataset, TempDir};

fn trainer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mien-trainer"))
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("mien-trainer runs")
}

fn manifest(model: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(model.join("manifest.json")).unwrap()).unwrap()
}

fn epochs(history: &serde_json::Value) -> Vec<u64> {
    history.as_array().unwrap().iter().map(|e| e["epoch"].as_u64().unwrap()).collect()
}

#[test]
fn a_schedule_cut_into_two_runs_goes_on_from_the_first_runs_model() {
    let tmp = TempDir::new("schedule-parts");
    let data = tmp.0.join("data");
    dataset(&data);
    let (first, second) = (tmp.0.join("first"), tmp.0.join("second"));
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let data_arg = s(&data);
    let common = ["--batch-size", "8", "--patience", "0", "--last-epoch", "--keep-epochs", "--seed", "7"];

    let mut args = vec!["train", "--data", &data_arg, "--epochs", "3", "--schedule-epochs", "6"];
    let out_first = s(&first);
    args.extend(["--out", &out_first]);
    args.extend(common);
    let run = trainer(&args);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let m1 = manifest(&first);
    assert_eq!(epochs(&m1["info"]["history"]), [1, 2, 3]);

    // The second part without the first's model is refused before anything trains.
    let refused = trainer(&["train", "--data", &s(&data), "--out", &s(&tmp.0.join("x")), "--schedule-done", "3"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--keep-head"));

    let out_second = s(&second);
    let mut args = vec!["train", "--data", &data_arg, "--out", &out_second, "--init", &out_first, "--keep-head"];
    args.extend(["--epochs", "3", "--schedule-epochs", "6", "--schedule-done", "3"]);
    args.extend(common);
    let run = trainer(&args);
    let said = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{said}");
    assert!(said.contains("epoch   4/6"), "epochs numbered on from the first part: {said}");
    let m2 = manifest(&second);
    assert_eq!(epochs(&m2["info"]["history"]), [4, 5, 6]);
    assert_eq!(epochs(&m2["info"]["init_history"]), [1, 2, 3]);
    // It went on from what the first part learnt: its first epoch fits the training images at
    // least as well as the first part's last one did, far better than a fresh network's first.
    let loss = |m: &serde_json::Value, i: usize| m["info"]["history"][i]["train_loss"].as_f64().unwrap();
    assert!(loss(&m2, 0) < loss(&m1, 0), "epoch 4 {} against epoch 1 {}", loss(&m2, 0), loss(&m1, 0));
    let reproduce = m2["info"]["reproduce"].as_str().unwrap();
    let steps: Vec<&str> = reproduce.split(" && ").collect();
    assert_eq!(steps.len(), 2, "{reproduce}");
    assert!(steps[0].contains("--schedule-epochs 6") && !steps[0].contains("--schedule-done"), "{reproduce}");
    assert!(steps[1].contains("--schedule-done 3") && steps[1].contains("--keep-head"), "{reproduce}");

    // Its kept epochs average by their schedule's numbers; the first part's are not there.
    let checkpoints = s(&second.join("checkpoints"));
    let mean = s(&tmp.0.join("mean"));
    let avg = |range: &str| {
        trainer(&["average", "--data", &s(&data), "--checkpoints", &checkpoints, "--epochs", range, "--out", &mean])
    };
    let early = avg("2-4");
    assert!(!early.status.success());
    assert!(String::from_utf8_lossy(&early.stderr).contains("finished epochs 4 to 6"));
    let run = avg("5-6");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(manifest(&tmp.0.join("mean"))["info"]["weight_averaging"]["epochs"], serde_json::json!([5, 6]));
}
