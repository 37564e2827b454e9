//! One training step: a batch (augmented, normalised), cut into parts, each part's loss and
//! gradients on its own thread.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::Scope;

use anyhow::Result;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use mien::classify::ExpressionNet;

use super::{Distill, Example, TrainConfig};
use crate::augment::{augment, Augment, SplitMix64};

/// Normalised NCHW batch tensor of `examples[idx]`, augmented when `rng` is given.
pub(crate) fn batch(
    examples: &[Example],
    idx: &[usize],
    cfg: &TrainConfig,
    rng: Option<&mut SplitMix64>,
    device: &Device,
) -> (Tensor<4>, Vec<usize>) {
    let (x, _, labels) = batch_with_dataset_crops(examples, idx, cfg, rng, false, device);
    (x, labels)
}

/// [`batch`], and with `dataset_crops` also the batch of the same images' dataset crops
/// ([`Example::dataset_pixels`], else `pixels`), each augmented exactly as its counterpart: the
/// generator is replayed from the same state, so `rng` ends where [`batch`] leaves it.
pub(crate) fn batch_with_dataset_crops(
    examples: &[Example],
    idx: &[usize],
    cfg: &TrainConfig,
    rng: Option<&mut SplitMix64>,
    dataset_crops: bool,
    device: &Device,
) -> (Tensor<4>, Option<Tensor<4>>, Vec<usize>) {
    let s = cfg.input_size as usize;
    let mut data = Vec::with_capacity(idx.len() * s * s);
    let mut dataset = Vec::with_capacity(if dataset_crops { idx.len() * s * s } else { 0 });
    let mut labels = Vec::with_capacity(idx.len());
    let mut rng = rng;
    let normalised = |px: Vec<f32>| px.into_iter().map(|p| (p / 255.0 - cfg.mean) / cfg.std);
    let px = |pixels: &[u8], r: Option<&mut SplitMix64>| -> Vec<f32> {
        match r {
            Some(r) if cfg.augment > 0.0 => augment(pixels, cfg.input_size, &Augment::scaled(cfg.augment), r),
            _ => pixels.iter().map(|&p| p as f32).collect(),
        }
    };
    for &i in idx {
        let ex = &examples[i];
        let before = rng.as_deref().cloned();
        data.extend(normalised(px(&ex.pixels, rng.as_deref_mut())));
        if dataset_crops {
            let mut replay = before;
            dataset.extend(normalised(px(ex.dataset_pixels.as_deref().unwrap_or(&ex.pixels), replay.as_mut())));
        }
        labels.push(ex.label);
    }
    let x = Tensor::from_data(TensorData::new(data, [idx.len(), 1, s, s]), device);
    let dataset = dataset_crops.then(|| Tensor::from_data(TensorData::new(dataset, [idx.len(), 1, s, s]), device));
    (x, dataset, labels)
}

/// One thread's part of a training step: its own fork of the network (fresh autodiff leaves, so
/// the parts' graphs stay apart and never wait on one lock), its images, and the dropout mask
/// drawn for them on the main thread.
struct Part {
    net: ExpressionNet,
    x: Tensor<4>,
    /// The same images' dataset crops, for the teachers (`--teacher-sees-dataset-crops`).
    x_dataset: Option<Tensor<4>>,
    /// The dropout mask with several lanes; with one, dropout draws its own inside the network,
    /// as it always did.
    keep: Option<Tensor<2>>,
    idx: Vec<usize>,
    labels: Vec<usize>,
    /// This part's share of the batch's images: its loss is weighted by it.
    share: f32,
}

/// A part's gradients (of its weighted loss), its loss × images and its correct answers.
struct PartDone {
    grads: GradientsParams,
    weighted_loss: Tensor<1>,
    hits: Tensor<1, Int>,
}

/// What a training thread needs to turn a [`Part`] into gradients: the loss and its inputs. Each
/// thread owns a copy.
#[derive(Clone)]
pub(super) struct PartLoss<'a> {
    train: &'a [Example],
    num_classes: usize,
    cfg: &'a TrainConfig,
    loss_fn: CrossEntropyLoss,
    soft_targets: bool,
    weights: Vec<f32>,
    teachers: Option<(Vec<ExpressionNet>, &'a Distill)>,
    device: Device,
}

impl PartLoss<'_> {
    fn run(&self, p: Part) -> PartDone {
        let (device, num_classes) = (&self.device, self.num_classes);
        let y = Tensor::<1, Int>::from_data(
            TensorData::new(p.labels.iter().map(|&l| l as i64).collect::<Vec<_>>(), [p.labels.len()]),
            device,
        );
        // The teachers see the same augmented images (or their dataset crops), without autodiff:
        // a constant target.
        let taught = self.teachers.as_ref().map(|(teachers, d)| {
            let seen = p.x_dataset.clone().unwrap_or_else(|| p.x.clone()).inner();
            let log_soft =
                |t: &ExpressionNet| burn::tensor::activation::log_softmax(t.forward(seen.clone()) / d.temperature, 1);
            let log_soft = match teachers.as_slice() {
                [one] => log_soft(one),
                // The ensemble's probabilities, their mean (kept off 0, where a probability
                // underflowed, so that its log is finite).
                [first, rest @ ..] => {
                    let sum = rest.iter().fold(log_soft(first).exp(), |sum, t| sum + log_soft(t).exp());
                    (sum / teachers.len() as f32).clamp_min(1e-30).log()
                }
                [] => unreachable!("TrainConfig::validate refuses distillation without a teacher"),
            };
            (log_soft.clone().exp().autodiff(), log_soft.autodiff())
        });
        let logits = match p.keep {
            Some(keep) => p.net.forward_with_dropout_mask(p.x, keep),
            None => p.net.forward(p.x),
        };
        // Counted on the device and read back every few steps: on a GPU each read is a round
        // trip that stalls the queue.
        let hits = logits.clone().detach().argmax(1).flatten::<1>(0, 1).equal(y.clone()).int().sum();
        let logits_student = logits.clone();
        let loss = if self.soft_targets {
            let mut t = Vec::with_capacity(p.idx.len() * num_classes);
            for &i in &p.idx {
                match &self.train[i].soft {
                    Some(s) if s.len() == num_classes => t.extend_from_slice(s),
                    _ => t.extend((0..num_classes).map(|c| if c == self.train[i].label { 1.0 } else { 0.0 })),
                }
            }
            let target = Tensor::<2>::from_data(TensorData::new(t, [p.idx.len(), num_classes]), device);
            let w: Vec<f32> =
                p.labels.iter().map(|&l| if self.cfg.class_weights { self.weights[l] } else { 1.0 }).collect();
            let w_sum: f32 = w.iter().sum::<f32>().max(1e-6);
            let w = Tensor::<1>::from_data(TensorData::new(w, [p.idx.len()]), device);
            let per_image = (target * burn::tensor::activation::log_softmax(logits, 1)).sum_dim(1).flatten::<1>(0, 1);
            (per_image * w).sum().neg() / w_sum
        } else {
            self.loss_fn.forward(logits, y)
        };
        let loss = match (taught, &self.teachers) {
            (Some((soft, log_soft)), Some((_, d))) => {
                // KL(teacher ‖ student) at temperature T, times T²: zero when they agree.
                let t = d.temperature;
                let student = burn::tensor::activation::log_softmax(logits_student / t, 1);
                let distill = (soft * (log_soft - student)).sum_dim(1).mean() * (t * t);
                loss * (1.0 - d.weight) + distill * d.weight
            }
            _ => loss,
        };
        let weighted_loss = loss.clone().detach() * p.labels.len() as f32;
        let loss = if p.share == 1.0 { loss } else { loss * p.share };
        let grads = GradientsParams::from_grads(loss.backward(), &p.net);
        PartDone { grads, weighted_loss, hits }
    }
}

impl<'a> PartLoss<'a> {
    /// The loss of a run with `cfg` on `train`: cross-entropy (class-weighted and smoothed as
    /// `cfg` says; against FERPlus's vote shares where the examples carry them), and the
    /// teachers' term where the run distils.
    pub(super) fn new(
        train: &'a [Example],
        num_classes: usize,
        cfg: &'a TrainConfig,
        teachers: Vec<ExpressionNet>,
        device: &Device,
    ) -> Self {
        let weights = class_weights(train, num_classes);
        let mut loss_cfg = CrossEntropyLossConfig::new();
        if cfg.class_weights {
            loss_cfg = loss_cfg.with_weights(Some(weights.clone()));
        }
        if cfg.label_smoothing > 0.0 {
            loss_cfg = loss_cfg.with_smoothing(Some(cfg.label_smoothing));
        }
        // FERPlus vote shares: cross-entropy against the soft target, each image weighted by its
        // majority class's weight (as burn's weighted loss does for hard labels).
        let soft_targets = train.iter().any(|e| e.soft.is_some());
        PartLoss {
            train,
            num_classes,
            cfg,
            loss_fn: loss_cfg.init(device),
            soft_targets,
            weights,
            teachers: cfg.distill.as_ref().map(|d| (teachers, d)),
            device: device.clone(),
        }
    }
}

/// Class weights: inverse frequency, normalised to mean 1 over the classes present.
fn class_weights(train: &[Example], num_classes: usize) -> Vec<f32> {
    let mut counts = vec![0usize; num_classes];
    for ex in train {
        counts[ex.label] += 1;
    }
    let present = counts.iter().filter(|&&c| c > 0).count().max(1) as f32;
    // A class with no training image (it occurs only in a test split) never meets the loss; burn
    // wants every weight positive.
    counts.iter().map(|&c| if c == 0 { 1.0 } else { train.len() as f32 / (present * c as f32) }).collect()
}

/// A training step's result: the batch's gradients, and each part's loss × images and correct
/// answers, still on the device (read back every few steps: on a GPU each read stalls the queue).
pub(super) struct StepDone {
    pub grads: GradientsParams,
    pub parts: Vec<(Tensor<1>, Tensor<1, Int>)>,
}

/// The threads a step's parts run on (see [`TrainConfig::lanes`]): none with one lane (the
/// whole batch runs on the calling thread), one per lane otherwise.
pub(super) struct Lanes<'a> {
    part_loss: PartLoss<'a>,
    threads: Vec<(Sender<Part>, Receiver<PartDone>)>,
}

impl<'a> Lanes<'a> {
    /// Starts `cfg.lanes` threads in `scope` (none for one lane), each with its copy of the loss.
    pub(super) fn spawn<'scope, 'env>(scope: &'scope Scope<'scope, 'env>, part_loss: PartLoss<'a>) -> Self
    where
        'a: 'scope,
    {
        let lanes = part_loss.cfg.lanes;
        let threads = (0..if lanes > 1 { lanes } else { 0 })
            .map(|_| {
                let (to_thread, jobs) = channel::<Part>();
                let (results, from_thread) = channel::<PartDone>();
                let part_loss = part_loss.clone();
                scope.spawn(move || {
                    for part in jobs {
                        if results.send(part_loss.run(part)).is_err() {
                            break;
                        }
                    }
                });
                (to_thread, from_thread)
            })
            .collect();
        Lanes { part_loss, threads }
    }

    /// One step's gradients for `net` on the images `idx`: the batch in `lanes` parts, one per
    /// thread. Everything random is drawn here, in order: the augmentation, then each part's
    /// dropout mask, so a seeded run gives the same numbers every time, resumed or not.
    pub(super) fn step(&self, net: &ExpressionNet, idx: &[usize], rng: &mut SplitMix64) -> Result<StepDone> {
        let PartLoss { train, cfg, device, .. } = &self.part_loss;
        let parts: Vec<&[usize]> = idx.chunks(idx.len().div_ceil(cfg.lanes)).collect();
        let mut inline = None;
        for (k, part) in parts.iter().enumerate() {
            let dataset_crops = cfg.distill.as_ref().is_some_and(|d| d.dataset_crops);
            let (x, x_dataset, labels) =
                batch_with_dataset_crops(train, part, cfg, Some(&mut *rng), dataset_crops, device);
            let (net, keep) = if cfg.lanes == 1 {
                (net.clone(), None)
            } else {
                let keep = Tensor::<2>::random(
                    [part.len(), net.feature_count()],
                    burn::tensor::Distribution::Bernoulli(1.0 - net.dropout_prob()),
                    device,
                );
                (net.clone().fork(device), Some(keep))
            };
            let share = part.len() as f32 / idx.len() as f32;
            let job = Part { net, x, x_dataset, keep, idx: part.to_vec(), labels, share };
            match self.threads.get(k) {
                Some(lane) => lane.0.send(job).map_err(|_| anyhow::anyhow!("a training thread stopped"))?,
                None => inline = Some(self.part_loss.run(job)),
            }
        }
        let mut summed = GradientsAccumulator::<ExpressionNet>::new();
        let mut sums = Vec::with_capacity(parts.len());
        for k in 0..parts.len() {
            let done = match (inline.take(), self.threads.get(k)) {
                (Some(done), _) => done,
                (None, Some(lane)) => lane.1.recv().map_err(|_| anyhow::anyhow!("a training thread stopped"))?,
                (None, None) => anyhow::bail!("part {k} of the batch went to no thread"),
            };
            summed.accumulate(net, done.grads);
            sums.push((done.weighted_loss, done.hits));
        }
        Ok(StepDone { grads: summed.grads(), parts: sums })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The teachers' batch of dataset crops is augmented exactly as the student's batch of the
    /// app's crops, image by image, and the generator goes on as if it were not there.
    #[test]
    fn the_dataset_crops_are_augmented_as_the_students_crops() {
        let cfg = TrainConfig { augment: 0.9, ..TrainConfig::default() };
        let side = cfg.input_size as usize;
        let app: Vec<u8> = (0..side * side).map(|i| (i * 7 % 251) as u8).collect();
        let dataset: Vec<u8> = (0..side * side).map(|i| (i * 13 % 241) as u8).collect();
        let ex = |pixels: &[u8], dataset_pixels: Option<&[u8]>| Example {
            pixels: pixels.to_vec(),
            label: 0,
            soft: None,
            dataset_pixels: dataset_pixels.map(<[u8]>::to_vec),
        };
        // An image with both crops, and one whose dataset crop is its only crop.
        let both = [ex(&app, Some(&dataset)), ex(&dataset, None)];
        let device = Device::flex();
        let mut rng = SplitMix64::new(5);
        let (x, x_dataset, _) = batch_with_dataset_crops(&both, &[0, 1], &cfg, Some(&mut rng), true, &device);
        // The same generator states on the dataset crops alone.
        let alone = [ex(&dataset, None), ex(&dataset, None)];
        let mut replay = SplitMix64::new(5);
        let (expected, _) = batch(&alone, &[0, 1], &cfg, Some(&mut replay), &device);
        let x_dataset = x_dataset.expect("asked for the dataset crops").into_data();
        assert_eq!(x_dataset, expected.into_data());
        assert_ne!(x.clone().into_data(), x_dataset, "the student's batch is the app's crops");
        // The student's batch and the generator are what the plain batch gives.
        let mut plain = SplitMix64::new(5);
        let (student, _) = batch(&both, &[0, 1], &cfg, Some(&mut plain), &device);
        assert_eq!(x.into_data(), student.into_data());
        assert_eq!(rng.next_u64(), plain.next_u64());
    }
}
