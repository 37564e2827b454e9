//! Training an [`ExpressionNet`] with burn autodiff: augmentation, class weighting, AdamW with a
//! cosine schedule, early stopping on a validation split, a checkpoint every epoch, `--resume`,
//! a progress line with loss, accuracy and ETA, and fixed seeds.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn_store::{ModuleSnapshot, SafetensorsStore};
use mien::classify::{ExpressionNet, ExpressionNetConfig};
use mien::metrics::ConfusionMatrix;
use serde::{Deserialize, Serialize};

use crate::augment::{augment, Augment, SplitMix64};

/// One training example: a gray crop (side `size`) and its class index.
#[derive(Clone)]
pub struct Example {
    pub pixels: Vec<u8>,
    pub label: usize,
    /// A soft target (probabilities in label-list order) where the dataset has one (FERPlus votes).
    pub soft: Option<Vec<f32>>,
}

/// Training hyper-parameters (all of them: a run is reproducible from these and the data).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub width: f64,
    /// The network's layer layout (`mien::classify::ExpressionNetConfig::layout`); configs saved
    /// before there was a second one are layout 1.
    #[serde(default = "mien::classify::first_layout")]
    pub layout: u32,
    pub dropout: f64,
    /// Augmentation strength, 0 (none) to 1 (the full ranges in [`Augment`]).
    pub augment: f32,
    pub label_smoothing: f32,
    /// Weight classes by inverse frequency.
    pub class_weights: bool,
    /// Stop after this many epochs without a better validation accuracy (0 = never).
    pub patience: usize,
    pub seed: u64,
    pub input_size: u32,
    pub mean: f32,
    pub std: f32,
    /// Start from the feature extractor of this model folder (fine-tuning) instead of random weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    /// Train on FERPlus's labels instead of FER2013's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ferplus: Option<crate::ferplus::FerPlusLabels>,
    /// Keep the model after the last epoch instead of the epoch with the best validation
    /// accuracy (the validation accuracy is still measured and recorded, but picks nothing): on
    /// small datasets a handful of validation subjects picks an epoch more by chance than by merit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub last_epoch: bool,
    /// No validation split: its subjects train too. Nothing is then picked by validation (the
    /// last epoch's model is kept), so this is for settings already chosen, such as the final
    /// model of a tuned protocol or cross-validation's folds, where a tenth more subjects matters.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_validation: bool,
    /// Knowledge distillation: also learn the soft predictions of a trained teacher model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<Distill>,
    /// Threads each training step is split over, each with its share of the batch. 1, the
    /// default and what configs saved before there was a choice mean: the whole batch on one
    /// thread, as every earlier run trained.
    ///
    /// On the CPU, one training step's tensor ops leave the cores idle about a third
    /// of the time (ops too small to parallelise, and the gaps between ops). With `lanes` = n the
    /// batch is cut into n parts, each run forward and backward on its own thread with its own fork
    /// of the network (fresh autodiff leaves, so the parts' graphs never merge and wait on one lock),
    /// and the parts fill each other's gaps. The batch's gradient is the sum of the parts' (each
    /// part's loss weighted by its share of the images), as for the whole batch, except that batch
    /// norm normalises each part by its own statistics ("ghost batches") and the running statistics
    /// follow the parts' mean. Everything random (augmentation, dropout masks) is drawn on the main
    /// thread in a fixed order, so a seeded run gives the same numbers every time, resumed or not.
    /// It is a training setting, saved with the run, not the machine's core count: the same command
    /// trains the same network everywhere.
    #[serde(default = "one_lane", skip_serializing_if = "is_one_lane")]
    pub lanes: usize,
}

/// Knowledge distillation (Hinton et al., 2015): the student also matches a larger teacher's
/// probabilities, softened by a temperature, on every augmented training batch. How a network
/// small enough for the browser's time budget can learn what only a wider one finds on its own.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Distill {
    /// The teachers' model folders (manifest.json + classifier.safetensors, any width), trained
    /// on the same labels, input size and normalisation. With more than one the target is the
    /// mean of their softened probabilities: an ensemble's, which is right more often than any of
    /// its members and costs the student nothing at inference. (Runs saved with one teacher
    /// wrote it as `teacher`.)
    #[serde(alias = "teacher", deserialize_with = "one_or_more")]
    pub teachers: Vec<String>,
    /// Share of the loss that is distillation, 0 < w ≤ 1; the rest is the usual cross-entropy.
    pub weight: f32,
    /// Softmax temperature of both networks in the distillation term (the term is scaled by T²,
    /// so its gradients keep their size as T changes).
    pub temperature: f32,
}

/// A list of teacher folders, or the single folder configs saved before there could be several.
fn one_or_more<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMore {
        One(String),
        More(Vec<String>),
    }
    Ok(match OneOrMore::deserialize(d)? {
        OneOrMore::One(t) => vec![t],
        OneOrMore::More(t) => t,
    })
}

impl TrainConfig {
    /// The network this configuration trains, with `num_classes` outputs.
    pub fn net_config(&self, num_classes: usize) -> ExpressionNetConfig {
        ExpressionNetConfig::new(num_classes).with_width(self.width).with_dropout(self.dropout).with_layout(self.layout)
    }

    /// Whether a run with `other` held out the same validation images as one with these settings,
    /// on the same dataset: the seed draws the split, over the images that FERPlus's labels (in
    /// their mode) keep.
    pub fn same_validation_split(&self, other: &TrainConfig) -> bool {
        let mode = |c: &TrainConfig| c.ferplus.as_ref().map(|f| f.mode);
        !self.no_validation && !other.no_validation && self.seed == other.seed && mode(self) == mode(other)
    }

    /// Refuses settings that cannot train, naming the flag, before any work starts.
    pub fn validate(&self) -> Result<()> {
        let check = |ok: bool, what: String| if ok { Ok(()) } else { Err(anyhow::anyhow!(what)) };
        check(self.epochs >= 1, format!("--epochs {} (at least 1)", self.epochs))?;
        check(self.batch_size >= 1, format!("--batch-size {} (at least 1)", self.batch_size))?;
        check(self.lr > 0.0 && self.lr < 1.0, format!("--lr {} (expected between 0 and 1)", self.lr))?;
        check((0.125..=8.0).contains(&self.width), format!("--width {} (expected 0.125–8)", self.width))?;
        check(
            mien::classify::LAYOUTS.contains(&self.layout),
            format!("--layout {} (expected {:?})", self.layout, mien::classify::LAYOUTS),
        )?;
        check((0.0..1.0).contains(&self.dropout), format!("--dropout {} (expected 0 ≤ p < 1)", self.dropout))?;
        check((0.0..=1.0).contains(&self.augment), format!("--augment {} (expected 0–1)", self.augment))?;
        check((1..=8).contains(&self.lanes), format!("--lanes {} (expected 1–8)", self.lanes))?;
        check(
            (0.0..1.0).contains(&self.label_smoothing),
            format!("--label-smoothing {} (expected 0 ≤ a < 1)", self.label_smoothing),
        )?;
        check(
            !(self.last_epoch && self.patience > 0),
            format!(
                "--last-epoch with --patience {}: early stopping picks by validation (use --patience 0)",
                self.patience
            ),
        )?;
        check(
            !(self.no_validation && self.patience > 0),
            format!("--no-validation with --patience {}: nothing to stop early on (use --patience 0)", self.patience),
        )?;
        if let Some(d) = &self.distill {
            check(!d.teachers.is_empty(), "--teacher: distillation needs at least one teacher".into())?;
            check(d.weight > 0.0 && d.weight <= 1.0, format!("--distill-weight {} (expected 0 < w ≤ 1)", d.weight))?;
            check(
                d.temperature > 0.0 && d.temperature <= 100.0,
                format!("--distill-temperature {} (expected 0 < T ≤ 100)", d.temperature),
            )?;
        }
        Ok(())
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 40,
            batch_size: 64,
            lr: 2e-3,
            weight_decay: 1e-4,
            width: 1.0,
            layout: 2,
            dropout: 0.3,
            augment: 1.0,
            label_smoothing: 0.05,
            class_weights: true,
            patience: 10,
            seed: 42,
            input_size: 48,
            mean: 0.5,
            std: 0.25,
            init: None,
            ferplus: None,
            last_epoch: false,
            no_validation: false,
            distill: None,
            lanes: 1,
        }
    }
}

fn one_lane() -> usize {
    1
}

fn is_one_lane(n: &usize) -> bool {
    *n == 1
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochStats {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_accuracy: Option<f64>,
    pub images_per_second: f64,
    pub seconds: f64,
    /// Where the epoch ran ([`crate::compute::description`]): a resumed run may change machines,
    /// and images/s means little without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// What a checkpoint folder holds besides the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    config: TrainConfig,
    num_classes: usize,
    /// Epochs completed.
    epoch: usize,
    best_val: Option<f64>,
    best_epoch: usize,
    history: Vec<EpochStats>,
    /// The network's parameter ids in traversal order. The optimizer state is keyed by them, and
    /// burn draws them at random when a network is built, so a resumed run must restore them.
    #[serde(default)]
    param_ids: Vec<u64>,
}

/// Collects the float parameters' ids in traversal order.
struct IdCollector(Vec<u64>);

impl ModuleVisitor for IdCollector {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.id.val());
    }
}

/// Gives the float parameters the ids of a [`IdCollector`] run, in the same order.
struct IdRestorer {
    ids: Vec<u64>,
    next: usize,
}

impl ModuleMapper for IdRestorer {
    fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if let Some(&id) = self.ids.get(self.next) {
            param.id = ParamId::from(id);
        }
        self.next += 1;
        param
    }
}

fn param_ids(net: &ExpressionNet) -> Vec<u64> {
    let mut c = IdCollector(Vec::new());
    net.visit(&mut c);
    c.0
}

/// A checkpoint folder's files. Weights and optimizer state carry the epoch in their names, and
/// `state.json` (renamed into place last) is the commit point: a run killed anywhere, even
/// between two files of one checkpoint, leaves `state.json` naming a complete, consistent set,
/// never this epoch's weights beside last epoch's optimizer.
pub struct Checkpoints {
    pub dir: PathBuf,
    /// Keep `last-NNNN.safetensors` of every epoch (1.3 MB each for the shipped width), so that
    /// `average` can take the mean of the last few. Not a training setting: a run resumed with
    /// or without it trains the same.
    pub keep_epochs: bool,
}

/// The weights a checkpoint folder holds after `epoch` (1-based), where the run kept them.
pub fn epoch_weights(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("last-{epoch:04}.safetensors"))
}

impl Checkpoints {
    fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    fn last(&self, epoch: usize) -> PathBuf {
        epoch_weights(&self.dir, epoch)
    }
    fn best(&self, epoch: usize) -> PathBuf {
        self.dir.join(format!("best-{epoch:04}.safetensors"))
    }
    fn optimizer(&self, epoch: usize) -> PathBuf {
        self.dir.join(format!("optimizer-{epoch:04}.bpk"))
    }

    /// Removes what the committed state no longer names (older epochs, temporaries of a killed
    /// write). Failures only leave clutter behind.
    fn prune(&self, state: &CheckpointState) {
        let keep = [self.last(state.epoch), self.best(state.best_epoch), self.optimizer(state.epoch), self.state()];
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let kept_epoch = self.keep_epochs && name.starts_with("last-") && name.ends_with(".safetensors");
            let ours = !kept_epoch
                && (["last-", "best-", "optimizer-"].iter().any(|s| name.starts_with(s)) || name.ends_with(".tmp"));
            if ours && !keep.contains(&p) {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

/// The committed state of a checkpoint folder.
fn read_state(dir: &Path) -> Result<CheckpointState> {
    let path = dir.join("state.json");
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "reading {} (is {} a run's checkpoints folder, <train --out>/checkpoints?)",
            path.display(),
            dir.display()
        )
    })?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not a mien checkpoint state", path.display()))
}

/// Reduces a run's checkpoints folder to what `--resume` and `export` need (the committed state,
/// its last weights and optimizer state, the best epoch's weights), dropping the epochs that
/// `--keep-epochs` kept for `average`. Returns the number of files removed.
pub fn prune_checkpoints(dir: &Path) -> Result<usize> {
    let state = read_state(dir)?;
    let count = || std::fs::read_dir(dir).map(|e| e.count()).unwrap_or(0);
    let before = count();
    Checkpoints { dir: dir.to_path_buf(), keep_epochs: false }.prune(&state);
    Ok(before.saturating_sub(count()))
}

/// The settings, output count, epoch history and best weights file of a checkpoint folder.
pub fn read_checkpoint(dir: &Path) -> Result<(TrainConfig, usize, Vec<EpochStats>, PathBuf)> {
    let state = read_state(dir)?;
    let best = Checkpoints { dir: dir.to_path_buf(), keep_epochs: false }.best(state.best_epoch);
    Ok((state.config, state.num_classes, state.history, best))
}

pub struct Trained {
    /// The best model on validation (or the last one without a validation set), inference mode.
    pub net: ExpressionNet,
    pub history: Vec<EpochStats>,
    pub best_epoch: usize,
}

/// The training device: the one `--device` selected ([`crate::compute`]), with autodiff.
fn device() -> Device {
    crate::compute::device().autodiff()
}

/// Training steps between reads of the loss and accuracy sums from the device.
const READ_BACK_STEPS: usize = 8;

/// Normalised NCHW batch tensor of `examples[idx]`, augmented when `rng` is given.
pub(crate) fn batch(
    examples: &[Example],
    idx: &[usize],
    cfg: &TrainConfig,
    rng: Option<&mut SplitMix64>,
    device: &Device,
) -> (Tensor<4>, Vec<usize>) {
    let s = cfg.input_size as usize;
    let mut data = Vec::with_capacity(idx.len() * s * s);
    let mut labels = Vec::with_capacity(idx.len());
    let mut rng = rng;
    for &i in idx {
        let ex = &examples[i];
        let px: Vec<f32> = match rng.as_deref_mut() {
            Some(r) if cfg.augment > 0.0 => augment(&ex.pixels, cfg.input_size, &Augment::scaled(cfg.augment), r),
            _ => ex.pixels.iter().map(|&p| p as f32).collect(),
        };
        data.extend(px.into_iter().map(|p| (p / 255.0 - cfg.mean) / cfg.std));
        labels.push(ex.label);
    }
    (Tensor::from_data(TensorData::new(data, [idx.len(), 1, s, s]), device), labels)
}

/// How a trained network is asked for its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inference {
    /// The crop as it is.
    Plain,
    /// The mean of the softmax of the crop and of its mirror image: what the app does with every
    /// model the trainer writes (`flip_average` in the manifest), so what evaluation must measure.
    FlipAverage,
}

/// Class probabilities of each example (inference mode, no augmentation), in label order.
pub fn probabilities(net: &ExpressionNet, examples: &[Example], cfg: &TrainConfig, how: Inference) -> Vec<Vec<f32>> {
    let device = crate::compute::device();
    let net = net.clone().to_device(&device);
    let mut out = Vec::with_capacity(examples.len());
    let idx: Vec<usize> = (0..examples.len()).collect();
    for chunk in idx.chunks(256) {
        let (x, _) = batch(examples, chunk, cfg, None, &device);
        let probs = net.probabilities(x, how == Inference::FlipAverage);
        let classes = probs.dims()[1];
        let v: Vec<f32> = probs.into_data().convert::<f32>().try_into_vec().unwrap_or_default();
        out.extend(v.chunks(classes).map(|c| c.to_vec()));
    }
    out
}

/// Predicted class of each example: the most probable one.
pub fn predict(net: &ExpressionNet, examples: &[Example], cfg: &TrainConfig, how: Inference) -> Vec<usize> {
    probabilities(net, examples, cfg, how)
        .iter()
        .map(|p| p.iter().enumerate().fold(0, |best, (i, &q)| if q > p[best] { i } else { best }))
        .collect()
}

/// Share of `examples` that `net` answers right, as the app asks it ([`Inference::FlipAverage`]);
/// `None` without examples (a run without a validation split).
pub fn accuracy(net: &ExpressionNet, examples: &[Example], cfg: &TrainConfig) -> Option<f64> {
    (!examples.is_empty()).then(|| {
        let p = predict(net, examples, cfg, Inference::FlipAverage);
        p.iter().zip(examples).filter(|(p, e)| **p == e.label).count() as f64 / examples.len() as f64
    })
}

/// Confusion matrix of `net` on `examples`, answering as the app does ([`Inference::FlipAverage`]).
pub fn evaluate(net: &ExpressionNet, examples: &[Example], cfg: &TrainConfig, labels: &[String]) -> ConfusionMatrix {
    evaluate_with(net, examples, cfg, labels, Inference::FlipAverage)
}

/// Confusion matrix of `net` on `examples`, answering `how`.
pub fn evaluate_with(
    net: &ExpressionNet,
    examples: &[Example],
    cfg: &TrainConfig,
    labels: &[String],
    how: Inference,
) -> ConfusionMatrix {
    let mut m = ConfusionMatrix::new(labels.to_vec());
    for (p, ex) in predict(net, examples, cfg, how).into_iter().zip(examples) {
        m.add(ex.label, p);
    }
    m
}

pub(crate) fn save_weights(net: &ExpressionNet, path: &Path) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut store = SafetensorsStore::from_file(&tmp).overwrite(true);
    net.save_into(&mut store).map_err(|e| anyhow::anyhow!("saving {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// Loads weights saved by [`save_weights`] (f32) or shipped in a model folder (f16 + int8, see
/// `mien::weights::quantize`) into a fresh network built from `cfg`.
pub fn load_weights(path: &Path, cfg: &TrainConfig, num_classes: usize, device: &Device) -> Result<ExpressionNet> {
    let mut net = cfg.net_config(num_classes).init(device);
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let bytes = mien::weights::dequantize(&bytes, &path.display().to_string())?;
    let mut store = SafetensorsStore::from_bytes(Some(bytes.into_owned()));
    net.load_from(&mut store).map_err(|e| anyhow::anyhow!("loading {}: {e}", path.display()))?;
    Ok(net)
}

/// A network with the trained layers of the model folder `dir` and a fresh head.
pub fn init_from(dir: &Path, cfg: &TrainConfig, num_classes: usize, device: &Device) -> Result<ExpressionNet> {
    let manifest: mien::ModelManifest = serde_json::from_slice(
        &std::fs::read(dir.join("manifest.json"))
            .with_context(|| format!("reading {}/manifest.json", dir.display()))?,
    )
    .with_context(|| format!("{}/manifest.json is not a model manifest", dir.display()))?;
    anyhow::ensure!(
        manifest.width == cfg.width && manifest.layout == cfg.layout && manifest.input_size == cfg.input_size,
        "the model in {} has width {}, layout {} and input {} but this run asks for width {}, layout {} and input {}",
        dir.display(),
        manifest.width,
        manifest.layout,
        manifest.input_size,
        cfg.width,
        cfg.layout,
        cfg.input_size
    );
    let net = load_weights(&dir.join("classifier.safetensors"), cfg, manifest.labels.len(), device)?;
    Ok(net.with_fresh_head(num_classes, device))
}

/// The seed of the device's generator during epoch `epoch` (0-based): dropout draws from it, so
/// seeding it per epoch makes a resumed run draw exactly what an uninterrupted one draws.
fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    seed ^ (epoch as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// The network a run starts from, drawn on the CPU whatever device trains it: with the same
/// seed a GPU run starts from the very weights a CPU run starts from (trainer/tests/gpu.rs). It
/// reaches another device through its saved bytes, loaded into a network built there (so its
/// parameters are that device's, tracked for gradients).
fn initial_net(cfg: &TrainConfig, num_classes: usize, device: &Device) -> Result<ExpressionNet> {
    let cpu = Device::flex().autodiff();
    if *device == cpu {
        return match &cfg.init {
            Some(dir) => init_from(Path::new(dir), cfg, num_classes, device),
            None => Ok(cfg.net_config(num_classes).init(device)),
        };
    }
    // burn draws a parameter when it is first used: on the CPU that is the first training step,
    // after the first epoch's reseed, so the weights are drawn here from that same seed.
    cpu.seed(epoch_seed(cfg.seed, 0));
    let drawn = initial_net(cfg, num_classes, &cpu)?;
    let mut store = SafetensorsStore::from_bytes(None);
    drawn.save_into(&mut store).map_err(|e| anyhow::anyhow!("{e}"))?;
    let bytes = store.get_bytes().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut net = cfg.net_config(num_classes).init(device);
    net.load_from(&mut SafetensorsStore::from_bytes(Some(bytes))).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(net)
}

/// A teacher of a distillation run, in inference mode on the plain (non-autodiff) training
/// device. Refused, naming the field, where its outputs or inputs are not the student's.
fn load_teacher(dir: &str, cfg: &TrainConfig, num_classes: usize) -> Result<ExpressionNet> {
    let dir = Path::new(dir);
    let read = |name: &str| {
        std::fs::read(dir.join(name)).with_context(|| format!("reading the teacher's {}/{name}", dir.display()))
    };
    let manifest_json = read("manifest.json")?;
    let manifest =
        mien::ModelManifest::from_json(&manifest_json).with_context(|| format!("the teacher {}", dir.display()))?;
    anyhow::ensure!(
        manifest.labels.len() == num_classes,
        "the teacher {} has {} labels, this run {num_classes}",
        dir.display(),
        manifest.labels.len()
    );
    anyhow::ensure!(
        manifest.input_size == cfg.input_size && manifest.mean == cfg.mean && manifest.std == cfg.std,
        "the teacher {} takes {}×{} inputs normalised by mean {} std {}, this run {}×{} by mean {} std {}",
        dir.display(),
        manifest.input_size,
        manifest.input_size,
        manifest.mean,
        manifest.std,
        cfg.input_size,
        cfg.input_size,
        cfg.mean,
        cfg.std
    );
    let teacher = mien::classify::ExpressionClassifier::load(
        &manifest_json,
        &read("classifier.safetensors")?,
        &crate::compute::device(),
    )
    .with_context(|| format!("loading the teacher {}", dir.display()))?;
    Ok(teacher.net().clone())
}

/// Writes `bytes` to a temporary file beside `path`, then renames it: a reader (or a killed run)
/// sees the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {}", tmp.display()))?;
    Ok(())
}

/// One thread's part of a training step: its own fork of the network (fresh autodiff leaves, so
/// the parts' graphs stay apart and never wait on one lock), its images, and the dropout mask
/// drawn for them on the main thread.
struct Part {
    net: ExpressionNet,
    x: Tensor<4>,
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
struct PartLoss<'a> {
    train: &'a [Example],
    num_classes: usize,
    cfg: &'a TrainConfig,
    loss_fn: burn::nn::loss::CrossEntropyLoss,
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
        // The teachers see the same augmented images, without autodiff: a constant target.
        let taught = self.teachers.as_ref().map(|(teachers, d)| {
            let log_soft = |t: &ExpressionNet| {
                burn::tensor::activation::log_softmax(t.forward(p.x.clone().inner()) / d.temperature, 1)
            };
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

/// Draws every lazily initialised parameter now, on this thread, in the network's order.
struct Materialise;

impl ModuleVisitor for Materialise {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// Trains on `train`, selecting the model on `val` (if any). With `checkpoint_dir`, writes a
/// checkpoint after every epoch ([`CheckpointFiles`]: each file written to a temporary file, then
/// renamed; `state.json` last) and resumes from the committed one when `resume` is set.
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
    let device = device();
    device.seed(cfg.seed);
    let mut net = initial_net(cfg, num_classes, &device)?;
    let mut optim: ModuleOptimizer = AdamWConfig::new().with_weight_decay(cfg.weight_decay as f32).init();
    let mut state = CheckpointState {
        config: cfg.clone(),
        num_classes,
        epoch: 0,
        best_val: None,
        best_epoch: 0,
        history: Vec::new(),
        param_ids: Vec::new(),
    };
    let files = checkpoints.inspect(|c| {
        let _ = std::fs::create_dir_all(&c.dir);
    });
    if resume {
        if let Some(files) = files.as_ref().filter(|f| f.state().exists()) {
            let st = files.state();
            let saved = read_state(&files.dir)?;
            anyhow::ensure!(
                saved.config == *cfg && saved.num_classes == num_classes,
                "{} was written with other settings; resume with the same command, or use a new --checkpoints folder",
                st.display()
            );
            if saved.epoch > 0 {
                net = load_weights(&files.last(saved.epoch), cfg, num_classes, &device)?;
                if saved.param_ids.len() == param_ids(&net).len() {
                    net = net.map(&mut IdRestorer { ids: saved.param_ids.clone(), next: 0 });
                }
                let opt = files.optimizer(saved.epoch);
                optim = optim.load(&opt).map_err(|e| anyhow::anyhow!("loading {}: {e:?}", opt.display()))?;
                state = saved;
                if !quiet {
                    eprintln!("resuming after epoch {} of {}", state.epoch, cfg.epochs);
                }
            }
        }
    }

    // Class weights: inverse frequency, normalised to mean 1 over the classes present.
    let mut counts = vec![0usize; num_classes];
    for ex in train {
        counts[ex.label] += 1;
    }
    let present = counts.iter().filter(|&&c| c > 0).count().max(1) as f32;
    let weights: Vec<f32> =
        // A class with no training image (it occurs only in a test split) never meets the loss;
        // burn wants every weight positive.
        counts.iter().map(|&c| if c == 0 { 1.0 } else { train.len() as f32 / (present * c as f32) }).collect();
    let mut loss_cfg = CrossEntropyLossConfig::new();
    if cfg.class_weights {
        loss_cfg = loss_cfg.with_weights(Some(weights.clone()));
    }
    if cfg.label_smoothing > 0.0 {
        loss_cfg = loss_cfg.with_smoothing(Some(cfg.label_smoothing));
    }
    let loss_fn = loss_cfg.init(&device);
    // FERPlus vote shares: cross-entropy against the soft target, each image weighted by its
    // majority class's weight (as burn's weighted loss does for hard labels).
    let soft_targets = train.iter().any(|e| e.soft.is_some());
    let teachers = match &cfg.distill {
        Some(d) => Some((d.teachers.iter().map(|t| load_teacher(t, cfg, num_classes)).collect::<Result<Vec<_>>>()?, d)),
        None => None,
    };

    let steps_per_epoch = train.len().div_ceil(cfg.batch_size);
    let total_steps = (steps_per_epoch * cfg.epochs).max(1);
    let mut best_net = match files.as_ref().filter(|_| state.epoch > 0) {
        Some(files) => Some(load_weights(&files.best(state.best_epoch), cfg, num_classes, &device)?),
        None => None,
    };

    let part_loss =
        PartLoss { train, num_classes, cfg, loss_fn, soft_targets, weights, teachers, device: device.clone() };
    let net = std::thread::scope(|scope| -> Result<ExpressionNet> {
        let mut net = net;
        // One lane runs on this thread; more get a thread each.
        let threads = if cfg.lanes > 1 { cfg.lanes } else { 0 };
        let lanes: Vec<_> = (0..threads)
            .map(|_| {
                let (to_thread, jobs) = std::sync::mpsc::channel::<Part>();
                let (results, from_thread) = std::sync::mpsc::channel::<PartDone>();
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
        for epoch in state.epoch..cfg.epochs {
            let started = Instant::now();
            device.seed(epoch_seed(cfg.seed, epoch));
            if cfg.lanes > 1 {
                // A fresh network is drawn here, after the first epoch's seed, not by whichever
                // thread first touches it. (One lane draws it in its first forward pass, dropout's
                // mask between the layers and the head, as runs always did.)
                net.visit(&mut Materialise);
            }
            // A per-epoch generator: resuming at epoch k replays exactly what an uninterrupted run does.
            let mut rng = SplitMix64::new(cfg.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut order: Vec<usize> = (0..train.len()).collect();
            rng.shuffle(&mut order);
            let (mut loss_sum, mut correct, mut seen) = (0f64, 0usize, 0usize);
            let mut pending: Option<(Tensor<1>, Tensor<1, Int>)> = None;
            for (step, idx) in order.chunks(cfg.batch_size).enumerate() {
                let global = epoch * steps_per_epoch + step;
                // Cosine decay with a short linear warm-up.
                let warm = steps_per_epoch.min(total_steps / 10).max(1);
                let lr = if global < warm {
                    cfg.lr * (global + 1) as f64 / warm as f64
                } else {
                    let t = (global - warm) as f64 / (total_steps - warm).max(1) as f64;
                    cfg.lr * (0.02 + 0.98 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
                };
                // The batch in `lanes` parts, one per thread (see [`TrainConfig::lanes`]). Everything
                // random is drawn here, in order: augmentation, then each part's dropout mask.
                let parts: Vec<&[usize]> = idx.chunks(idx.len().div_ceil(cfg.lanes)).collect();
                let mut inline = None;
                for (k, part) in parts.iter().enumerate() {
                    let (x, labels) = batch(train, part, cfg, Some(&mut rng), &device);
                    let (net, keep) = if cfg.lanes == 1 {
                        (net.clone(), None)
                    } else {
                        let keep = Tensor::<2>::random(
                            [part.len(), net.feature_count()],
                            burn::tensor::Distribution::Bernoulli(1.0 - net.dropout_prob()),
                            &device,
                        );
                        (net.clone().fork(&device), Some(keep))
                    };
                    let job =
                        Part { net, x, keep, idx: part.to_vec(), labels, share: part.len() as f32 / idx.len() as f32 };
                    match lanes.get(k) {
                        Some(lane) => lane.0.send(job).map_err(|_| anyhow::anyhow!("a training thread stopped"))?,
                        // One lane: on this thread, as every run before lanes trained.
                        None => inline = Some(part_loss.run(job)),
                    }
                }
                let mut summed = GradientsAccumulator::<ExpressionNet>::new();
                for k in 0..parts.len() {
                    let done = match (inline.take(), lanes.get(k)) {
                        (Some(done), _) => done,
                        (None, Some(lane)) => {
                            lane.1.recv().map_err(|_| anyhow::anyhow!("a training thread stopped"))?
                        }
                        (None, None) => anyhow::bail!("part {k} of the batch went to no thread"),
                    };
                    summed.accumulate(&net, done.grads);
                    pending = Some(match pending.take() {
                        Some((l, c)) => (l + done.weighted_loss, c + done.hits),
                        None => (done.weighted_loss, done.hits),
                    });
                }
                seen += idx.len();
                net = optim.step(lr, net, summed.grads());
                // A fixed cadence, not a timer: the sums must group the same way in a resumed run.
                if (step + 1) % READ_BACK_STEPS == 0 || step + 1 == steps_per_epoch {
                    if let Some((l, c)) = pending.take() {
                        loss_sum += l.into_scalar::<f32>() as f64;
                        correct += c.into_scalar::<i64>() as usize;
                    }
                } else {
                    continue;
                }
                if !quiet {
                    let elapsed = started.elapsed().as_secs_f64();
                    let rate = seen as f64 / elapsed.max(1e-9);
                    let remaining = (train.len() - seen) as f64 / rate
                        + (cfg.epochs - epoch - 1) as f64 * train.len() as f64 / rate;
                    let done = seen * 30 / train.len();
                    eprint!(
                        "\repoch {:>3}/{} [{}{}] {:>6}/{} loss {:.3} acc {:5.1}% {:5.0} img/s ETA {} ",
                        epoch + 1,
                        cfg.epochs,
                        "=".repeat(done),
                        " ".repeat(30 - done),
                        seen,
                        train.len(),
                        loss_sum / seen as f64,
                        100.0 * correct as f64 / seen as f64,
                        rate,
                        hms(remaining)
                    );
                    let _ = std::io::stderr().flush();
                }
            }
            let seconds = started.elapsed().as_secs_f64();
            let inference = net.valid();
            let val_accuracy = accuracy(&inference, val, cfg);
            let stats = EpochStats {
                epoch: epoch + 1,
                train_loss: loss_sum / seen.max(1) as f64,
                train_accuracy: correct as f64 / seen.max(1) as f64,
                val_accuracy,
                images_per_second: seen as f64 / seconds,
                seconds,
                device: Some(crate::compute::description()),
            };
            if !quiet {
                eprintln!(
                    "\repoch {:>3}/{}: loss {:.3}, train acc {:.1}%, val acc {}, {:.0} img/s, {:.0} s{}",
                    stats.epoch,
                    cfg.epochs,
                    stats.train_loss,
                    100.0 * stats.train_accuracy,
                    val_accuracy.map(|v| format!("{:.1}%", 100.0 * v)).unwrap_or_else(|| "-".into()),
                    stats.images_per_second,
                    seconds,
                    " ".repeat(20)
                );
            }
            state.history.push(stats);
            state.epoch = epoch + 1;
            state.param_ids = param_ids(&net);
            let improved = cfg.last_epoch
                || match (val_accuracy, state.best_val) {
                    (Some(v), Some(b)) => v > b,
                    (Some(_), None) => true,
                    (None, _) => true,
                };
            if improved {
                state.best_val = val_accuracy;
                state.best_epoch = epoch + 1;
                best_net = Some(snapshot(&net, cfg, num_classes, &device));
            }
            if let Some(files) = &files {
                save_weights(&net, &files.last(state.epoch))?;
                if improved {
                    save_weights(&net, &files.best(state.best_epoch))?;
                }
                let opt = files.optimizer(state.epoch);
                let tmp = opt.with_extension("tmp");
                optim.save(&tmp).map_err(|e| anyhow::anyhow!("saving {}: {e:?}", tmp.display()))?;
                std::fs::rename(&tmp, &opt)?;
                // Fault injection for the tests: a window in which the new epoch's files exist but
                // are not yet committed, to kill the run mid-checkpoint.
                if let Some(ms) = std::env::var("MIEN_FAULT_CHECKPOINT_PAUSE_MS").ok().and_then(|v| v.parse().ok()) {
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                }
                write_atomic(&files.state(), &serde_json::to_vec_pretty(&state)?)?;
                files.prune(&state);
            }
            if cfg.patience > 0 && val_accuracy.is_some() && epoch + 1 - state.best_epoch >= cfg.patience {
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

/// A copy of `net` that further training leaves alone. A clone is not one: burn keeps batch norm's
/// running statistics behind a shared lock, so a clone kept as "the best epoch" would leave the
/// run with that epoch's weights beside the last epoch's statistics (as every model this trainer
/// wrote from a run whose best epoch was not its last did, until session 25). A copy through the
/// module's record owns its statistics.
fn snapshot(net: &ExpressionNet, cfg: &TrainConfig, num_classes: usize, device: &Device) -> ExpressionNet {
    cfg.net_config(num_classes).init(device).load_record(net.clone().into_record())
}

fn hms(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
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
        let distill = |weight, temperature| Some(Distill { teachers: vec!["t".into()], weight, temperature });
        let untaught = Distill { teachers: vec![], weight: 0.7, temperature: 4.0 };
        refused(TrainConfig { distill: Some(untaught), ..TrainConfig::default() }, "--teacher");
        refused(TrainConfig { distill: distill(0.0, 4.0), ..TrainConfig::default() }, "--distill-weight");
        refused(TrainConfig { distill: distill(0.7, 0.0), ..TrainConfig::default() }, "--distill-temperature");
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
