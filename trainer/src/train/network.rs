//! The networks of a run: the one it starts from (random, or `--init`'s trained layers), its
//! teachers, and the weight files it reads and writes.

use std::path::Path;

use anyhow::{Context, Result};
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn_store::{ModuleSnapshot, SafetensorsStore};
use mien::classify::ExpressionNet;

use super::TrainConfig;

/// Writes `net`'s f32 weights to `path` (through a temporary file: a killed run leaves the old
/// file or the new one).
pub fn save_weights(net: &ExpressionNet, path: &Path) -> Result<()> {
    crate::fsutil::replace_with(path, |tmp| {
        let mut store = SafetensorsStore::from_file(tmp).overwrite(true);
        net.save_into(&mut store).map_err(|e| anyhow::anyhow!("saving {}: {e}", tmp.display()))
    })
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

/// A network with the trained layers of the model folder `dir` and a fresh head (or its own,
/// with `--keep-head`).
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
    if cfg.keep_head {
        anyhow::ensure!(
            manifest.labels.len() == num_classes,
            "--keep-head: the model in {} has {} classes, this run {num_classes}",
            dir.display(),
            manifest.labels.len()
        );
        return Ok(net);
    }
    Ok(net.with_fresh_head(num_classes, device))
}

/// The seed of the device's generator during epoch `epoch` (0-based): dropout draws from it, so
/// seeding it per epoch makes a resumed run draw exactly what an uninterrupted one draws.
pub(super) fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    seed ^ (epoch as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// The network a run starts from, drawn on the CPU whatever device trains it: with the same
/// seed a GPU run starts from the very weights a CPU run starts from (trainer/tests/gpu.rs). It
/// reaches another device through its saved bytes, loaded into a network built there (so its
/// parameters are that device's, tracked for gradients).
pub(super) fn initial_net(cfg: &TrainConfig, num_classes: usize, device: &Device) -> Result<ExpressionNet> {
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
pub(super) fn load_teacher(dir: &str, cfg: &TrainConfig, num_classes: usize) -> Result<ExpressionNet> {
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
/// Draws every lazily initialised parameter now, on this thread, in the network's order.
pub(super) struct Materialise;

impl ModuleVisitor for Materialise {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// A copy of `net` that further training leaves alone. A clone is not one: burn keeps batch norm's
/// running statistics behind a shared lock, so a clone kept as "the best epoch" would leave the
/// run with that epoch's weights beside the last epoch's statistics. A copy through the module's
/// record owns its statistics.
pub(super) fn snapshot(net: &ExpressionNet, cfg: &TrainConfig, num_classes: usize, device: &Device) -> ExpressionNet {
    cfg.net_config(num_classes).init(device).load_record(net.clone().into_record())
}
