//! Fine-tuning (`cv --init assets/model`, `train --init`) starts from the model the app ships, whose
//! weights are stored compact (f16 + int8): the trainer must read them exactly as the app does.

use mien::burn::prelude::*;
use mien_trainer::commands::{load_classifier, shipped_model_dir};
use mien_trainer::train::{init_from, load_weights, TrainConfig};

#[test]
fn the_trainer_loads_the_shipped_compact_weights_as_the_app_does() {
    let dir = shipped_model_dir();
    let cfg = TrainConfig { init: Some(dir.display().to_string()), ..TrainConfig::default() };
    let device = Device::flex();
    let app = load_classifier(&dir).unwrap();
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
}
