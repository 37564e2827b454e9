//! Fine-tuning (`cv --init assets/model`, `train --init`) starts from the model the app ships, whose
//! weights are stored compact (f16 + int8): the trainer must read them exactly as the app does.
//! The app's network runs with its batch norms folded into the convolutions; the trainer's keeps
//! them (it trains them), so the first test also holds folding to the same outputs within 1e-5.

use mien::burn::prelude::*;
use mien_trainer::evaluate::{load_classifier, shipped_model_dir};
use mien_trainer::train::{init_from, load_weights, TrainConfig};

#[test]
fn the_trainer_loads_the_shipped_compact_weights_as_the_app_does() {
    let dir = shipped_model_dir();
    let device = Device::flex();
    let app = load_classifier(&dir).unwrap();
    let cfg = TrainConfig {
        init: Some(dir.display().to_string()),
        layout: app.manifest().layout,
        width: app.manifest().width,
        ..TrainConfig::default()
    };
    let labels = app.manifest().labels.len();
    let trainer = load_weights(&dir.join("classifier.safetensors"), &cfg, labels, &device).unwrap();
    let pixels: Vec<f32> = (0..2 * 48 * 48).map(|i| ((i * 37 % 256) as f32 / 255.0 - 0.5) / 0.25).collect();
    let x = Tensor::<4>::from_data(TensorData::new(pixels, [2, 1, 48, 48]), &device);
    let a: Vec<f32> = app.net().forward(x.clone()).into_data().convert::<f32>().try_into_vec().unwrap();
    let b: Vec<f32> = trainer.forward(x).into_data().convert::<f32>().try_into_vec().unwrap();
    assert_eq!(a.len(), 2 * labels);
    assert!(a.iter().zip(&b).all(|(p, q)| (p - q).abs() < 1e-5), "{a:?} vs {b:?}");
    // And a fine-tuning run can start from it, with a head for another label set.
    let net = init_from(&dir, &cfg, 5, &device).unwrap();
    let y = net.forward(Tensor::zeros([1, 1, 48, 48], &device));
    assert_eq!(y.dims(), [1, 5]);
    // With --keep-head it goes on from the model's own answers; a head for other labels is refused.
    let kept = TrainConfig { keep_head: true, ..cfg.clone() };
    let same = init_from(&dir, &kept, labels, &device).unwrap();
    let c: Vec<f32> = same.forward(x2(&device)).into_data().convert::<f32>().try_into_vec().unwrap();
    let d: Vec<f32> = trainer.forward(x2(&device)).into_data().convert::<f32>().try_into_vec().unwrap();
    assert_eq!(c, d);
    let refused = init_from(&dir, &kept, 5, &device).expect_err("a kept head for 5 classes").to_string();
    assert!(refused.contains("--keep-head"), "{refused}");
}

/// A fixed batch of two inputs.
fn x2(device: &Device) -> Tensor<4> {
    let pixels: Vec<f32> = (0..2 * 48 * 48).map(|i| ((i * 53 % 256) as f32 / 255.0 - 0.5) / 0.25).collect();
    Tensor::<4>::from_data(TensorData::new(pixels, [2, 1, 48, 48]), device)
}

/// Evaluation (`cv`, `evaluate`, validation) must measure what the app computes: the trainer's
/// flip-averaged probabilities equal the app classifier's on real photos, and differ from the
/// plain ones (so the comparison shows the mirror image is really used).
#[test]
fn trainer_evaluation_answers_as_the_app_does() {
    use mien::align::FaceCrop;
    use mien_trainer::train::{probabilities, Example, Inference};
    let dir = shipped_model_dir();
    let app = load_classifier(&dir).unwrap();
    let m = app.manifest();
    assert!(m.flip_average, "the shipped model averages with the mirror image");
    let cfg = TrainConfig {
        mean: m.mean,
        std: m.std,
        input_size: m.input_size,
        layout: m.layout,
        width: m.width,
        ..TrainConfig::default()
    };
    let faces = mien_trainer::repo_root().join("tests/fixtures/faces");
    let mut names: Vec<_> = std::fs::read_dir(&faces).unwrap().flatten().map(|e| e.path()).collect();
    names.sort();
    let crops: Vec<FaceCrop> = names
        .iter()
        .map(|p| {
            let img = image::open(p).unwrap().to_luma8();
            let small = image::imageops::resize(&img, 48, 48, image::imageops::FilterType::Triangle);
            FaceCrop { size: 48, pixels: small.into_raw() }
        })
        .collect();
    assert!(crops.len() >= 8);
    let examples: Vec<Example> = crops
        .iter()
        .map(|c| Example { pixels: c.pixels.clone(), label: 0, soft: None, dataset_pixels: None })
        .collect();
    let net = load_weights(&dir.join("classifier.safetensors"), &cfg, m.labels.len(), &Device::flex()).unwrap();
    let trainer = probabilities(&net, &examples, &cfg, Inference::FlipAverage);
    let plain = probabilities(&net, &examples, &cfg, Inference::Plain);
    let app_probs = app.classify(&crops.iter().collect::<Vec<_>>()).unwrap();
    let mut differs = 0f32;
    for ((t, a), p) in trainer.iter().zip(&app_probs).zip(&plain) {
        assert!(t.iter().zip(a).all(|(x, y)| (x - y).abs() < 1e-5), "trainer {t:?} vs app {a:?}");
        differs = differs.max(t.iter().zip(p).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max));
    }
    assert!(differs > 1e-3, "flip averaging changed nothing (largest change {differs})");
}
