//! Expression classification of aligned face crops, and the model manifest that travels with the
//! weights (label order, input size, normalisation, crop convention, provenance, metrics).

pub mod model;

use burn::prelude::*;
use burn_store::{ModuleSnapshot, SafetensorsStore};
use serde::{Deserialize, Serialize};

use crate::align::{CropConfig, FaceCrop};
use crate::emotion::Emotion;
pub use model::{ExpressionNet, ExpressionNetConfig, LAYOUTS};

/// Everything needed to use a set of classifier weights exactly as they were trained.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelManifest {
    pub schema_version: u32,
    /// Output order of the network.
    pub labels: Vec<Emotion>,
    /// Side of the square gray input, in pixels.
    pub input_size: u32,
    /// Input = (pixel / 255 - mean) / std.
    pub mean: f32,
    pub std: f32,
    /// How faces are cut out of frames for this model.
    pub crop: CropConfig,
    pub width: f64,
    /// The network's layer layout ([`ExpressionNetConfig::layout`]); manifests written before
    /// there was a second one have no such field and are layout 1.
    #[serde(default = "first_layout")]
    pub layout: u32,
    /// Average the probabilities of the crop and its mirror image (test-time augmentation:
    /// twice the classifier's cost, steadier predictions).
    #[serde(default)]
    pub flip_average: bool,
    /// Free-form provenance: training data and licences, seed, command to reproduce, metrics.
    #[serde(default)]
    pub info: serde_json::Map<String, serde_json::Value>,
}

pub const MANIFEST_SCHEMA_VERSION: u32 = 1;

/// The layout of a manifest or training config written before `layout` existed (serde default).
pub fn first_layout() -> u32 {
    1
}

/// Which views of a face crop the network looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Views {
    /// The crop, and its mirror image too where the manifest asks for it
    /// ([`ModelManifest::flip_average`]).
    #[default]
    AsTrained,
    /// The crop alone, or its mirror image alone: half the work of `flip_average`. A live loop
    /// alternates the two from frame to frame, and its smoothing over time averages them as
    /// `flip_average` averages them within a frame.
    One { mirrored: bool },
}

/// The index of the most probable class (the first of equals; 0 for an empty slice), for every
/// caller that turns probabilities into an answer: the pipeline, the trainer's evaluation, the
/// pages.
pub fn argmax(probabilities: &[f32]) -> usize {
    probabilities.iter().enumerate().fold(0, |best, (i, &p)| if p > probabilities[best] { i } else { best })
}

/// Bounds of a manifest that a browser can run: anything outside is a corrupt or foreign file,
/// refused before it can ask for a gigabyte network or a NaN-producing normalisation.
const MAX_INPUT_SIZE: u32 = 256;
const MAX_WIDTH: f64 = 8.0;
const MIN_WIDTH: f64 = 0.125;

impl ModelManifest {
    /// Parses and validates a `manifest.json`.
    pub fn from_json(bytes: &[u8]) -> Result<ModelManifest, ClassifierError> {
        let manifest: ModelManifest =
            serde_json::from_slice(bytes).map_err(|e| ClassifierError::Manifest(e.to_string()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The network these weights were trained as.
    pub fn net_config(&self) -> ExpressionNetConfig {
        ExpressionNetConfig::new(self.labels.len()).with_width(self.width).with_layout(self.layout)
    }

    /// Checks every field the classifier relies on; the message names the field.
    pub fn validate(&self) -> Result<(), ClassifierError> {
        let bad = |what: String| Err(ClassifierError::Manifest(what));
        if self.schema_version != MANIFEST_SCHEMA_VERSION {
            return bad(format!("schema_version {} (this build reads {MANIFEST_SCHEMA_VERSION})", self.schema_version));
        }
        if self.labels.len() < 2 {
            return bad(format!("{} labels (a classifier needs at least 2)", self.labels.len()));
        }
        for (i, l) in self.labels.iter().enumerate() {
            if self.labels[..i].contains(l) {
                return bad(format!("label {l} is listed twice"));
            }
        }
        if !(8..=MAX_INPUT_SIZE).contains(&self.input_size) {
            return bad(format!("input_size {} (expected 8–{MAX_INPUT_SIZE} pixels)", self.input_size));
        }
        if self.crop.size != self.input_size {
            return bad(format!("crop.size {} differs from input_size {}", self.crop.size, self.input_size));
        }
        if !(MIN_WIDTH..=MAX_WIDTH).contains(&self.width) {
            return bad(format!("width {} (expected {MIN_WIDTH}–{MAX_WIDTH})", self.width));
        }
        if !LAYOUTS.contains(&self.layout) {
            return bad(format!(
                "layout {} (this build knows layouts {}–{})",
                self.layout,
                LAYOUTS.start(),
                LAYOUTS.end()
            ));
        }
        if !self.mean.is_finite() || !self.std.is_finite() || self.std <= 1e-6 {
            return bad(format!("normalisation mean {} std {} (std must be a positive number)", self.mean, self.std));
        }
        if !self.crop.margin.is_finite() || !self.crop.shift.is_finite() {
            return bad("crop margin and shift must be numbers".into());
        }
        Ok(())
    }
}

/// Why a classifier could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    #[error("model manifest is not valid: {0}")]
    Manifest(String),
    #[error("classifier weights {file}: {reason}")]
    Weights { file: String, reason: String },
    #[error("crop is {got}×{got} pixels but the model takes {want}×{want}")]
    CropSize { got: u32, want: u32 },
    #[error("reading results back failed: {0}")]
    Backend(String),
}

/// The expression classifier on a burn device.
#[derive(Debug, Clone)]
pub struct ExpressionClassifier {
    net: ExpressionNet,
    manifest: ModelManifest,
    device: Device,
}

impl ExpressionClassifier {
    /// Loads weights saved by the trainer (burn layout safetensors) described by `manifest`.
    pub fn load(manifest_json: &[u8], weights: &[u8], device: &Device) -> Result<Self, ClassifierError> {
        let manifest = ModelManifest::from_json(manifest_json)?;
        let file = "classifier.safetensors".to_string();
        if weights.is_empty() {
            return Err(ClassifierError::Weights { file, reason: "the file is empty".into() });
        }
        // The framing first: a truncated or foreign file is refused before a network is built.
        // Shipped weights are int8 with per-channel scales; they become f32 here.
        let weights = crate::weights::dequantize(weights, &file)
            .map_err(|e| ClassifierError::Weights { file: file.clone(), reason: e.to_string() })?;
        let mut net = manifest.net_config().init(device);
        let mut store = SafetensorsStore::from_bytes(Some(weights.into_owned())).allow_partial(true).validate(false);
        let result = net
            .load_from(&mut store)
            .map_err(|e| ClassifierError::Weights { file: file.clone(), reason: e.to_string() })?;
        if let Some(e) = result.errors.first() {
            return Err(ClassifierError::Weights { file, reason: format!("{e:?}") });
        }
        if let Some((path, _)) = result.missing.first() {
            return Err(ClassifierError::Weights {
                file,
                reason: format!(
                    "tensor `{path}` is missing (the manifest describes a layout {} network of width {}: \
                     are these its weights?)",
                    manifest.layout, manifest.width
                ),
            });
        }
        Ok(ExpressionClassifier { net: net.fold_batch_norm(), manifest, device: device.clone() })
    }

    /// Wraps an in-memory network (the trainer's), folded for inference as [`Self::load`] does.
    pub fn from_net(net: ExpressionNet, manifest: ModelManifest, device: &Device) -> Self {
        ExpressionClassifier { net: net.fold_batch_norm(), manifest, device: device.clone() }
    }

    pub fn manifest(&self) -> &ModelManifest {
        &self.manifest
    }

    /// The network as it runs here: batch norms folded into the convolutions, so for inference
    /// only (fine-tuning starts from the weights file instead: `mien-trainer train --init`).
    pub fn net(&self) -> &ExpressionNet {
        &self.net
    }

    /// Normalised input tensor data for crops (NCHW, 1 channel).
    pub fn input(manifest: &ModelManifest, crops: &[&FaceCrop]) -> Result<Vec<f32>, ClassifierError> {
        let mut v = Vec::with_capacity(crops.len() * (manifest.input_size * manifest.input_size) as usize);
        for c in crops {
            if c.size != manifest.input_size {
                return Err(ClassifierError::CropSize { got: c.size, want: manifest.input_size });
            }
            v.extend(c.pixels.iter().map(|&p| (p as f32 / 255.0 - manifest.mean) / manifest.std));
        }
        Ok(v)
    }

    /// Class probabilities for each crop, in `manifest().labels` order.
    pub async fn classify_async(&self, crops: &[&FaceCrop]) -> Result<Vec<Vec<f32>>, ClassifierError> {
        self.classify_views_async(crops, Views::AsTrained).await
    }

    /// Class probabilities for each crop from the given views of it (see [`Views`]).
    pub async fn classify_views_async(
        &self,
        crops: &[&FaceCrop],
        views: Views,
    ) -> Result<Vec<Vec<f32>>, ClassifierError> {
        if crops.is_empty() {
            return Ok(Vec::new());
        }
        let s = self.manifest.input_size as usize;
        let x = Tensor::<4>::from_data(
            TensorData::new(Self::input(&self.manifest, crops)?, [crops.len(), 1, s, s]),
            &self.device,
        );
        let probs = match views {
            Views::AsTrained => self.net.probabilities(x, self.manifest.flip_average),
            Views::One { mirrored: false } => self.net.probabilities(x, false),
            Views::One { mirrored: true } => self.net.probabilities(x.flip([3]), false),
        };
        let data = probs.into_data_async().await.map_err(|e| ClassifierError::Backend(format!("{e:?}")))?;
        let flat: Vec<f32> =
            data.convert::<f32>().try_into_vec().map_err(|e| ClassifierError::Backend(format!("{e:?}")))?;
        Ok(flat.chunks(self.manifest.labels.len()).map(|c| c.to_vec()).collect())
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn classify(&self, crops: &[&FaceCrop]) -> Result<Vec<Vec<f32>>, ClassifierError> {
        pollster::block_on(self.classify_async(crops))
    }
}
