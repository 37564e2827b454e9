//! A training run killed with SIGKILL and resumed ends exactly where an uninterrupted run with the
//! same seed ends, and no checkpoint it leaves behind is ever unreadable.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("mien-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A small class-folder dataset: 48×48 gray images whose pattern depends on the class (so the
/// network has something to learn), with subject ids in the file names.
fn dataset(root: &Path) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 56) as u8
    };
    for (class, label) in ["happy", "sad", "surprise"].iter().enumerate() {
        let dir = root.join(label);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..24 {
            let img = image::GrayImage::from_fn(48, 48, |x, y| {
                let stripe = if (x as usize / (4 + 4 * class) + y as usize / 8).is_multiple_of(2) { 170 } else { 70 };
                image::Luma([stripe / 2 + next() / 2])
            });
            img.save(dir.join(format!("S{:03}_001_{:08}.png", i % 12, i))).unwrap();
        }
    }
}

fn train(data: &Path, out: &Path, resume: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mien-trainer"));
    c.args(["train", "--epochs", "6", "--batch-size", "8", "--patience", "0", "--seed", "7", "--data"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .env("RAYON_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
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

#[test]
fn killed_and_resumed_run_ends_like_an_uninterrupted_one() {
    let tmp = TempDir::new("resume");
    let data = tmp.0.join("data");
    dataset(&data);

    let straight = tmp.0.join("straight");
    let out = train(&data, &straight, false).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Kill a second run with SIGKILL once it has written two epochs' checkpoints.
    let killed = tmp.0.join("killed");
    let mut child = train(&data, &killed, false).spawn().unwrap();
    let state = killed.join("checkpoints/state.json");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let epoch = std::fs::read(&state)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["epoch"].as_u64())
            .unwrap_or(0);
        if epoch >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no checkpoint after 300 s");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL on Unix: no chance to clean up
    child.wait().unwrap();
    // Whatever instant the kill hit, every checkpoint file present is whole.
    let ckpt = killed.join("checkpoints");
    let st: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).expect("state.json is whole");
    assert!(st["epoch"].as_u64().unwrap() >= 2);
    for f in ["last.safetensors", "best.safetensors"] {
        let bytes = std::fs::read(ckpt.join(f)).unwrap();
        assert_whole_safetensors(f, &bytes);
    }

    let out = train(&data, &killed, true).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("resuming after epoch"), "{log}");
    assert_eq!(history(&killed), history(&straight), "resumed run differs from the uninterrupted one");
    let (a, b) = (
        tensors(&std::fs::read(killed.join("classifier.safetensors")).unwrap()),
        tensors(&std::fs::read(straight.join("classifier.safetensors")).unwrap()),
    );
    assert_eq!(a.len(), b.len());
    for (name, bytes) in &a {
        assert!(b.get(name) == Some(bytes), "tensor {name} differs after resuming");
    }
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
