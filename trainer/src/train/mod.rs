//! Training an [`ExpressionNet`] with burn autodiff: augmentation, class weighting, AdamW with a
//! warm-up and cosine schedule, early stopping on a validation split, a checkpoint every epoch,
//! `--resume`, distillation from teachers, and fixed seeds.
//!
//! One concern a file: [`config`] (the settings), [`step`] (one step's loss and gradients, on
//! one thread or several), [`schedule`] (the learning rate), [`checkpoint`] (the run's folder),
//! [`network`] (the networks a run starts from and the weight files), [`inference`] (a trained
//! network's answers) and [`progress`] (what a run prints). [`train`] is the loop over them.

mod checkpoint;
mod config;
mod inference;
mod network;
mod progress;
mod schedule;
mod step;

use std::time::Instant;

use anyhow::Result;
use burn::module::Module;
use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::prelude::*;
use mien::classify::ExpressionNet;

pub use checkpoint::{epoch_weights, prune_checkpoints, read_checkpoint, Checkpoints, EpochStats};
pub use config::{Distill, TrainConfig};
pub use inference::{accuracy, evaluate, evaluate_with, predict, probabilities, Inference};
pub use network::{init_from, load_weights, save_weights};
pub(crate) use step::batch;

use crate::augment::SplitMix64;
use checkpoint::CheckpointState;
use progress::EpochProgress;
use step::{Lanes, PartLoss};

/// One training example: a gray crop (side `size`) and its class index.
#[derive(Clone)]
pub struct Example {
    pub pixels: Vec<u8>,
    pub label: usize,
    /// A soft target (probabilities in label-list order) where the dataset has one (FERPlus votes).
    pub soft: Option<Vec<f32>>,
    /// The dataset's own crop, where `pixels` holds another (the app's, with --app-crops): what
    /// teachers that learnt on dataset crops are shown with --teacher-sees-dataset-crops.
    pub dataset_pixels: Option<Vec<u8>>,
}

pub struct Trained {
    /// The best model on validation (or the last one without a validation set), inference mode.
    pub net: ExpressionNet,
    pub history: Vec<EpochStats>,
    pub best_epoch: usize,
}

/// Training steps between reads of the loss and accuracy sums from the device. A fixed cadence,
/// not a timer: the sums must group the same way in a resumed run.
const READ_BACK_STEPS: usize = 8;

/// Trains on `train`, selecting the model on `val` (if any). With `checkpoints`, writes a
/// checkpoint after every epoch ([`Checkpoints`]) and, when `resume` is set, continues from the
/// committed one.
pub fn train(
    train: &[Example],
    val: &[Example],
    num_classes: usize,
    cfg: &TrainConfig,
    checkpoints: Option<&Checkpoints>,
    resume: bool,
    quiet: bool,
) -> Result<Trained> {
    anyhow::ensure!(!train.is_empty(), "no training examples");
    cfg.validate()?;
    let device = crate::compute::device().autodiff();
    device.seed(cfg.seed);
    let mut net = network::initial_net(cfg, num_classes, &device)?;
    let mut optim: ModuleOptimizer = AdamWConfig::new().with_weight_decay(cfg.weight_decay as f32).init();
    let mut state = CheckpointState::new(cfg, num_classes);
    let mut best_net = None;
    if let Some(c) = checkpoints {
        std::fs::create_dir_all(&c.dir)?;
        if let Some((saved, last)) = resume.then(|| c.resume(cfg, num_classes, &device)).transpose()?.flatten() {
            optim = c.load_optimizer(&saved, optim)?;
            best_net = Some(load_weights(&c.best_weights(&saved), cfg, num_classes, &device)?);
            net = last;
            state = saved;
            if !quiet {
                eprintln!("resuming after epoch {} of {}", state.epoch, cfg.last_schedule_epoch());
            }
        }
    }
    let teachers = match &cfg.distill {
        Some(d) => d.teachers.iter().map(|t| network::load_teacher(t, cfg, num_classes)).collect::<Result<_>>()?,
        None => Vec::new(),
    };
    let part_loss = PartLoss::new(train, num_classes, cfg, teachers, &device);
    let steps_per_epoch = train.len().div_ceil(cfg.batch_size);
    let mut schedule = schedule::Schedule::new(cfg, steps_per_epoch, state.epoch * steps_per_epoch)?;

    let net = std::thread::scope(|scope| -> Result<ExpressionNet> {
        let lanes = Lanes::spawn(scope, part_loss);
        let mut net = net;
        for epoch in state.epoch..cfg.last_schedule_epoch() {
            let started = Instant::now();
            device.seed(network::epoch_seed(cfg.seed, epoch));
            if cfg.lanes > 1 {
                // A fresh network is drawn here, after the epoch's seed, not by whichever thread
                // first touches it. (One lane draws it in its first forward pass.)
                net.visit(&mut network::Materialise);
            }
            // A per-epoch generator: resuming at epoch k replays exactly what an uninterrupted run does.
            let mut rng = SplitMix64::new(cfg.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut order: Vec<usize> = (0..train.len()).collect();
            rng.shuffle(&mut order);
            let progress = EpochProgress::start(epoch, cfg.last_schedule_epoch(), train.len(), quiet);
            let (mut loss_sum, mut correct, mut seen) = (0f64, 0usize, 0usize);
            let mut pending: Option<(Tensor<1>, Tensor<1, Int>)> = None;
            for (step, idx) in order.chunks(cfg.batch_size).enumerate() {
                let lr = schedule.next_rate();
                let done = lanes.step(&net, idx, &mut rng)?;
                for (l, c) in done.parts {
                    pending = Some(match pending.take() {
                        Some((pl, pc)) => (pl + l, pc + c),
                        None => (l, c),
                    });
                }
                seen += idx.len();
                net = optim.step(lr, net, done.grads);
                if (step + 1) % READ_BACK_STEPS == 0 || step + 1 == steps_per_epoch {
                    if let Some((l, c)) = pending.take() {
                        loss_sum += l.into_scalar::<f32>() as f64;
                        correct += c.into_scalar::<i64>() as usize;
                    }
                    progress.update(seen, loss_sum / seen as f64, correct as f64 / seen as f64);
                }
            }
            let seconds = started.elapsed().as_secs_f64();
            let stats = EpochStats {
                epoch: epoch + 1,
                train_loss: loss_sum / seen.max(1) as f64,
                train_accuracy: correct as f64 / seen.max(1) as f64,
                val_accuracy: accuracy(&net.valid(), val, cfg),
                images_per_second: seen as f64 / seconds,
                seconds,
                device: Some(crate::compute::description()),
            };
            progress.finish(&stats);
            let improved = state.record(stats, &net);
            if improved {
                best_net = Some(network::snapshot(&net, cfg, num_classes, &device));
            }
            if let Some(c) = checkpoints {
                c.commit(&state, &net, &optim, improved)?;
            }
            if state.patience_ran_out() {
                if !quiet {
                    eprintln!("early stop: no better validation accuracy for {} epochs", cfg.patience);
                }
                break;
            }
        }
        Ok(net)
    })?;
    let best = best_net.unwrap_or(net);
    Ok(Trained { net: best.valid(), history: state.history, best_epoch: state.best_epoch })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_train_are_refused_naming_the_flag() {
        let refused = |cfg: TrainConfig, flag: &str| {
            let e = cfg.validate().expect_err(flag).to_string();
            assert!(e.contains(flag), "{e}");
        };
        refused(TrainConfig { epochs: 0, ..TrainConfig::default() }, "--epochs");
        refused(TrainConfig { lr: 0.0, ..TrainConfig::default() }, "--lr");
        refused(TrainConfig { width: 100.0, ..TrainConfig::default() }, "--width");
        refused(TrainConfig { layout: 0, ..TrainConfig::default() }, "--layout");
        refused(TrainConfig { last_epoch: true, ..TrainConfig::default() }, "--last-epoch");
        refused(TrainConfig { no_validation: true, ..TrainConfig::default() }, "--no-validation");
        let distill = |weight, temperature| {
            Some(Distill { teachers: vec!["t".into()], weight, temperature, dataset_crops: false })
        };
        let untaught = Distill { teachers: vec![], weight: 0.7, temperature: 4.0, dataset_crops: false };
        refused(TrainConfig { distill: Some(untaught), ..TrainConfig::default() }, "--teacher");
        refused(TrainConfig { distill: distill(0.0, 4.0), ..TrainConfig::default() }, "--distill-weight");
        refused(TrainConfig { distill: distill(0.7, 0.0), ..TrainConfig::default() }, "--distill-temperature");
        let across = Distill { teachers: vec!["t".into()], weight: 0.7, temperature: 4.0, dataset_crops: true };
        refused(
            TrainConfig { distill: Some(across.clone()), ..TrainConfig::default() },
            "--teacher-sees-dataset-crops",
        );
        TrainConfig { distill: Some(across), app_crops: true, ..TrainConfig::default() }.validate().unwrap();
        TrainConfig::default().validate().unwrap();
        TrainConfig { last_epoch: true, patience: 0, ..TrainConfig::default() }.validate().unwrap();
    }

    /// Runs saved with one teacher (`"teacher": DIR`) still read, as a list of one.
    #[test]
    fn a_config_saved_with_one_teacher_reads_as_a_list_of_one() {
        let old = r#"{"teacher": "../runs/fer-w125-s23", "weight": 0.7, "temperature": 4.0}"#;
        let d: Distill = serde_json::from_str(old).unwrap();
        assert_eq!(d.teachers, ["../runs/fer-w125-s23"]);
        let new = serde_json::to_value(&d).unwrap();
        assert_eq!(new["teachers"], serde_json::json!(["../runs/fer-w125-s23"]));
        assert_eq!(serde_json::from_value::<Distill>(new).unwrap(), d);
    }

    /// With a validation set that favours an early epoch, `last_epoch` still keeps the last.
    #[test]
    fn last_epoch_keeps_the_last_model_whatever_validation_says() {
        // Two classes told apart by brightness; the validation set is labelled backwards, so the
        // better the network learns, the worse it does there and validation prefers epoch 1.
        let ex = |i: usize, label: usize| Example {
            pixels: vec![if label == 0 { 40 } else { 200 } + (i % 7) as u8; 48 * 48],
            label,
            soft: None,
            dataset_pixels: None,
        };
        let train_set: Vec<Example> = (0..32).map(|i| ex(i, i % 2)).collect();
        let val: Vec<Example> = (0..8).map(|i| Example { label: 1 - i % 2, ..ex(i, i % 2) }).collect();
        let cfg = TrainConfig { epochs: 3, batch_size: 16, width: 0.25, patience: 0, ..TrainConfig::default() };
        let picked = train(&train_set, &val, 2, &cfg, None, false, true).unwrap();
        assert!(picked.best_epoch < 3, "validation picked epoch {}", picked.best_epoch);
        let last =
            train(&train_set, &val, 2, &TrainConfig { last_epoch: true, ..cfg.clone() }, None, false, true).unwrap();
        assert_eq!(last.best_epoch, 3);
        assert_eq!(last.history.len(), 3);
        assert!(last.history.iter().all(|h| h.val_accuracy.is_some()), "validation is still measured");
    }
}
