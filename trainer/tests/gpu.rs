//! The trainer's GPU path (`--device gpu`: burn on wgpu) trains the same network as its CPU path
//! (`--device cpu`: burn flex). It runs on whatever adapter wgpu finds: a GPU where there is one,
//! and on the CI machine Mesa's lavapipe, a Vulkan driver that runs on the CPU (`cargo xtask
//! setup` installs it), so that the code a GPU machine runs is exercised by every CI run.

use std::path::Path;
use std::process::Command;

mod common;
use common::{dataset, TempDir};

/// Trains the small test network on `device` (no augmentation, no dropout: nothing random but the
/// seeded initial weights and batch order); returns the manifest's per-epoch history and the log.
fn train(device: &str, data: &Path, out: &Path, epochs: &str, lr: &str) -> (serde_json::Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_mien-trainer"))
        .args(["--device", device, "train", "--epochs", epochs, "--lr", lr, "--batch-size", "16", "--patience", "0"])
        .args(["--seed", "3", "--width", "0.5", "--augment", "0", "--dropout", "0", "--data"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "--device {device} failed (no Vulkan driver? `apt-get install mesa-vulkan-drivers` gives one on the CPU):\n{log}"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    (manifest["info"]["history"].clone(), log)
}

#[test]
fn gpu_and_cpu_paths_compute_the_same_network() {
    let tmp = TempDir::new("gpu");
    let data = tmp.0.join("data");
    dataset(&data);
    // 1. The same function: at a learning rate too small to move the weights, an epoch's mean
    // loss is the loss of the initial network (drawn on the CPU for either device) on the same
    // batches, so the two backends must agree up to the order of their floating-point sums.
    let (gpu, gpu_log) = train("gpu", &data, &tmp.0.join("gpu"), "1", "1e-9");
    let (cpu, cpu_log) = train("cpu", &data, &tmp.0.join("cpu"), "1", "1e-9");
    assert!(gpu_log.contains("device: GPU: "), "{gpu_log}");
    assert!(cpu_log.contains("device: CPU"), "{cpu_log}");
    let (g, c) = (&gpu[0], &cpu[0]);
    assert!(g["device"].as_str().unwrap().starts_with("GPU: "), "each epoch records where it ran: {g}");
    assert!(c["device"].as_str().unwrap().starts_with("CPU"), "{c}");
    let (lg, lc) = (g["train_loss"].as_f64().unwrap(), c["train_loss"].as_f64().unwrap());
    println!("initial network, mean loss over an epoch: GPU {lg:.7}, CPU {lc:.7}");
    assert!((lg - lc).abs() < 1e-4 * lc, "GPU {lg} vs CPU {lc}");
    assert_eq!(g["train_accuracy"], c["train_accuracy"]);

    // 2. The same gradients and optimizer steps: four epochs at the usual rate fit the data on
    // both, along nearly the same path (Adam's normalised steps let rounding differences grow
    // a little, so the losses agree to a few percent, not to the last digit).
    let (gpu, _) = train("gpu", &data, &tmp.0.join("gpu-learns"), "4", "0.002");
    let (cpu, _) = train("cpu", &data, &tmp.0.join("cpu-learns"), "4", "0.002");
    for (g, c) in gpu.as_array().unwrap().iter().zip(cpu.as_array().unwrap()) {
        let (lg, lc) = (g["train_loss"].as_f64().unwrap(), c["train_loss"].as_f64().unwrap());
        println!("epoch {}: loss GPU {lg:.5}, CPU {lc:.5}", g["epoch"]);
        assert!((lg - lc).abs() < 0.05 * lc, "epoch {}: loss GPU {lg} vs CPU {lc}", g["epoch"]);
    }
    let last = &gpu[3];
    assert!(last["train_loss"].as_f64() < gpu[0]["train_loss"].as_f64(), "{gpu}");
    assert!(last["train_accuracy"].as_f64().unwrap() > 0.9, "three classes, chance is 0.33: {gpu}");
}
