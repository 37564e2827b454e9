//! A training run killed with SIGKILL and resumed ends exactly where an uninterrupted run with the
//! same seed ends, and no checkpoint it leaves behind is ever unreadable.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{dataset, TempDir};

fn train(data: &Path, out: &Path, resume: bool) -> Command {
    train_in_lanes(data, out, resume, 1)
}

fn train_in_lanes(data: &Path, out: &Path, resume: bool, lanes: usize) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mien-trainer"));
    c.args(["train", "--epochs", "6", "--batch-size", "8", "--patience", "0", "--seed", "7", "--data"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .env("RAYON_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .args(["--lanes", &lanes.to_string()]);
    if resume {
        c.arg("--resume");
    }
    c
}

fn history(model: &Path) -> serde_json::Value {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(model.join("manifest.json")).unwrap()).unwrap();
    // Losses and accuracies per epoch; times differ between runs by nature.
    m["info"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| serde_json::json!([e["epoch"], e["train_loss"], e["train_accuracy"], e["val_accuracy"]]))
        .collect()
}

/// A safetensors file is an 8-byte header length, a JSON header, then the tensor data; every
/// tensor's byte range must lie in the data, and the data must end where the last one ends.
fn assert_whole_safetensors(name: &str, bytes: &[u8]) {
    assert!(bytes.len() >= 8, "{name}: {} bytes", bytes.len());
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert!(8 + n <= bytes.len(), "{name}: header runs past the end");
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).expect("header is JSON");
    let data = bytes.len() - 8 - n;
    let end = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(_, t)| t["data_offsets"][1].as_u64().unwrap() as usize)
        .max()
        .unwrap_or(0);
    assert_eq!(end, data, "{name}: tensor data is {data} bytes, the header describes {end}");
}

fn state_epoch(state: &Path) -> u64 {
    std::fs::read(state)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["epoch"].as_u64())
        .unwrap_or(0)
}

/// Spawns a run and SIGKILLs it the moment `ready` says so; returns the checkpoint folder.
fn kill_when(data: &Path, out: &Path, lanes: usize, pause_ms: Option<u64>, ready: impl Fn(&Path) -> bool) -> PathBuf {
    let mut cmd = train_in_lanes(data, out, false, lanes);
    if let Some(ms) = pause_ms {
        cmd.env("MIEN_FAULT_CHECKPOINT_PAUSE_MS", ms.to_string());
    }
    let mut child = cmd.spawn().unwrap();
    let ckpt = out.join("checkpoints");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !ready(&ckpt) {
        assert!(Instant::now() < deadline, "the kill point never came in 300 s");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL on Unix: no chance to clean up
    child.wait().unwrap();
    ckpt
}

/// The committed checkpoint is whole: state.json parses and names weights and optimizer files
/// that exist and are complete.
fn assert_committed_checkpoint_whole(ckpt: &Path) -> u64 {
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ckpt.join("state.json")).unwrap()).expect("state.json is whole");
    let (epoch, best) = (st["epoch"].as_u64().unwrap(), st["best_epoch"].as_u64().unwrap());
    for f in [format!("last-{epoch:04}.safetensors"), format!("best-{best:04}.safetensors")] {
        let bytes = std::fs::read(ckpt.join(&f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_whole_safetensors(&f, &bytes);
    }
    assert!(ckpt.join(format!("optimizer-{epoch:04}.bpk")).exists());
    epoch
}

fn resume_and_compare(data: &Path, killed: &Path, straight: &Path, lanes: usize) {
    let out = train_in_lanes(data, killed, true, lanes).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("resuming after epoch"), "{log}");
    assert_eq!(history(killed), history(straight), "resumed run differs from the uninterrupted one");
    let (a, b) = (
        tensors(&std::fs::read(killed.join("classifier.safetensors")).unwrap()),
        tensors(&std::fs::read(straight.join("classifier.safetensors")).unwrap()),
    );
    assert_eq!(a.len(), b.len());
    for (name, bytes) in &a {
        assert!(b.get(name) == Some(bytes), "tensor {name} differs after resuming");
    }
}

#[test]
fn killed_and_resumed_runs_end_like_an_uninterrupted_one() {
    kill_resume_and_compare(1);
}

/// The same with each step split over two threads (`--lanes 2`): what the threads compute must
/// not depend on which of them runs first.
#[test]
fn killed_and_resumed_two_lane_runs_end_like_an_uninterrupted_one() {
    kill_resume_and_compare(2);
}

fn kill_resume_and_compare(lanes: usize) {
    let tmp = TempDir::new(&format!("resume-{lanes}"));
    let data = tmp.0.join("data");
    dataset(&data);

    let straight = tmp.0.join("straight");
    let out = train_in_lanes(&data, &straight, false, lanes).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // 1. Killed mid-epoch: once two epochs are committed, during the third.
    let mid_epoch = tmp.0.join("mid-epoch");
    let ckpt = kill_when(&data, &mid_epoch, lanes, None, |c| state_epoch(&c.join("state.json")) >= 2);
    assert!(assert_committed_checkpoint_whole(&ckpt) >= 2);
    resume_and_compare(&data, &mid_epoch, &straight, lanes);

    // 2. Killed mid-checkpoint: epoch 3's weights and optimizer state are written, state.json
    // (the commit) is not. The resumed run must redo epoch 3 from epoch 2's files, not mix them.
    let mid_ckpt = tmp.0.join("mid-checkpoint");
    let ckpt = kill_when(&data, &mid_ckpt, lanes, Some(3000), |c| {
        c.join("optimizer-0003.bpk").exists() && state_epoch(&c.join("state.json")) == 2
    });
    assert!(ckpt.join("last-0003.safetensors").exists(), "the kill came before epoch 3's weights were written");
    assert_eq!(assert_committed_checkpoint_whole(&ckpt), 2);
    resume_and_compare(&data, &mid_ckpt, &straight, lanes);
    // Only the committed checkpoint is left: older epochs and temporaries are pruned.
    let mut left: Vec<String> =
        std::fs::read_dir(&ckpt).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left.len(), 4, "{left:?}");
    assert!(
        left.contains(&"state.json".to_string()) && left.contains(&"last-0006.safetensors".to_string()),
        "{left:?}"
    );
}

fn average(data: &Path, checkpoints: &Path, epochs: &str, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mien-trainer"))
        .args(["average", "--epochs", epochs, "--bn-batches", "3", "--data"])
        .arg(data)
        .arg("--checkpoints")
        .arg(checkpoints)
        .arg("--out")
        .arg(out)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap()
}

/// `train --keep-epochs` keeps every epoch's weights, and `average` writes a model with their mean
/// whose card says what it is; epochs the run has not finished, or did not keep, are refused with
/// the reason.
#[test]
fn average_writes_the_mean_of_the_kept_epochs() {
    let tmp = TempDir::new("average");
    let data = tmp.0.join("data");
    dataset(&data);
    let run = tmp.0.join("run");
    let out = train(&data, &run, false).arg("--keep-epochs").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ckpt = run.join("checkpoints");
    for e in 1..=6 {
        assert!(ckpt.join(format!("last-{e:04}.safetensors")).exists(), "epoch {e}'s weights were not kept");
    }

    let mean = tmp.0.join("mean");
    let out = average(&data, &ckpt, "4-6", &mean);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("mean of epochs 4-6, batch norm measured on 3 batches: validation"), "{log}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(mean.join("manifest.json")).unwrap()).unwrap();
    let info = &manifest["info"];
    assert_eq!(info["weight_averaging"]["epochs"], serde_json::json!([4, 6]), "{info}");
    // The dashboard's model card shows the architecture line: it says the weights are a mean.
    assert!(info["architecture"].as_str().unwrap().contains("the mean of epochs 4–6"), "{info}");
    let v = info["weight_averaging"]["val_accuracy"].as_f64().expect("a validation accuracy");
    assert!((0.0..=1.0).contains(&v), "{v}");
    assert!(info["reproduce"].as_str().unwrap().contains("--keep-epochs && cargo xtask trainer average"), "{info}");
    // The mean is none of the epochs it came from: the run's own model (its best epoch) differs.
    let (a, b) = (
        tensors(&std::fs::read(mean.join("classifier.safetensors")).unwrap()),
        tensors(&std::fs::read(run.join("classifier.safetensors")).unwrap()),
    );
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert!(a != b, "the averaged weights equal the run's own");

    // `prune` leaves what a resume and an export need, as a run without --keep-epochs would.
    let pruned = tmp.0.join("pruned");
    copy_dir(&ckpt, &pruned);
    let out = Command::new(env!("CARGO_BIN_EXE_mien-trainer"))
        .arg("prune")
        .arg("--checkpoints")
        .arg(&pruned)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut left: Vec<String> =
        std::fs::read_dir(&pruned).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    let best = left.iter().find(|n| n.starts_with("best-")).cloned();
    assert_eq!(
        left,
        [best.unwrap_or_default().as_str(), "last-0006.safetensors", "optimizer-0006.bpk", "state.json"],
        "{left:?}"
    );
    let export = |checkpoints: &Path, out: &str| {
        let model = tmp.0.join(out);
        let done = Command::new(env!("CARGO_BIN_EXE_mien-trainer"))
            .arg("export")
            .arg("--data")
            .arg(&data)
            .arg("--checkpoints")
            .arg(checkpoints)
            .arg("--out")
            .arg(&model)
            .output()
            .unwrap();
        assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
        tensors(&std::fs::read(model.join("classifier.safetensors")).unwrap())
    };
    let whole = export(&ckpt, "exported-whole");
    assert!(export(&pruned, "exported") == whole, "pruning changed the exported model");
    // The run's own model is its best epoch whole, batch norm's running statistics included, not
    // that epoch's weights beside the last epoch's statistics.
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(ckpt.join("state.json")).unwrap()).unwrap();
    let best_epoch = state["best_epoch"].as_u64().unwrap();
    assert!(best_epoch < 6, "this check needs a run whose best epoch ({best_epoch}) is not its last");
    assert!(
        whole == tensors(&std::fs::read(run.join("classifier.safetensors")).unwrap()),
        "the run's model is not its best epoch's checkpoint"
    );
    // `evaluate --validation` scores the model as the app does on the split its run held out:
    // the best epoch's validation accuracy, as the run measured it.
    let report = tmp.0.join("validation.json");
    let out = Command::new(env!("CARGO_BIN_EXE_mien-trainer"))
        .args(["evaluate", "--validation", "--model"])
        .arg(&run)
        .arg("--data")
        .arg(&data)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let scored: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let measured = state["history"][best_epoch as usize - 1]["val_accuracy"].as_f64().unwrap();
    // (Reports round to nine decimals.)
    let scored = scored["accuracy"].as_f64().unwrap();
    assert!((scored - measured).abs() < 1e-6, "validation {scored} as scored, {measured} as the run measured it");
    // A folder without a run's state is refused, and even files named like checkpoints stay.
    let stranger = tmp.0.join("not-a-run");
    std::fs::create_dir_all(&stranger).unwrap();
    std::fs::write(stranger.join("last-0001.safetensors"), b"someone else's file").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mien-trainer"))
        .arg("prune")
        .arg("--checkpoints")
        .arg(&stranger)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("a run's checkpoints folder"), "{out:?}");
    assert!(stranger.join("last-0001.safetensors").exists());

    let out = average(&data, &ckpt, "5-9", &tmp.0.join("late"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has finished epochs 1 to 6"));
    std::fs::remove_file(ckpt.join("last-0005.safetensors")).unwrap();
    let out = average(&data, &ckpt, "4-6", &tmp.0.join("gap"));
    assert!(!out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("last-0005.safetensors is missing") && log.contains("--keep-epochs"), "{log}");
}

/// Each tensor's name and raw bytes (the header's key order is not fixed, so files are compared
/// tensor by tensor).
fn tensors(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, t)| {
            let (s, e) =
                (t["data_offsets"][0].as_u64().unwrap() as usize, t["data_offsets"][1].as_u64().unwrap() as usize);
            (k.clone(), data[s..e].to_vec())
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Resuming with other settings is refused, and the message names each setting that differs
/// with its saved and its new value.
#[test]
fn resuming_with_other_settings_names_them() {
    let tmp = TempDir::new("resume-other-settings");
    let data = tmp.0.join("data");
    dataset(&data);
    let out = tmp.0.join("run");
    let run = |extra: &[&str]| train(&data, &out, false).args(extra).output().unwrap();
    let first = run(&["--lr", "0.001"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let again = run(&["--lr", "0.002", "--augment", "0.9", "--resume"]);
    let log = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success(), "resumed with other settings: {log}");
    assert!(log.contains("written with other settings"), "{log}");
    assert!(log.contains("lr: 0.001 → 0.002"), "{log}");
    // An f32 setting as given, not as its nearest f64.
    assert!(log.contains("augment: 1 → 0.9"), "{log}");
    assert!(!log.contains("seed:"), "a setting that did not change is named: {log}");
}
