//! A model folder: the weights as the app ships them and the manifest (model card) that says
//! how to use them, what they were trained on and how to reproduce them.

use std::path::Path;

use anyhow::Result;
use mien::align::CropConfig;
use mien::classify::{ModelManifest, MANIFEST_SCHEMA_VERSION};
use mien::Emotion;

use crate::datasets::{self, Dataset};
use crate::train::{EpochStats, TrainConfig};

#[allow(clippy::too_many_arguments)]
/// Writes a model folder: `classifier.safetensors` and a `manifest.json` that says everything
/// needed to use the weights as trained, and where they came from.
pub fn write_model(
    out: &Path,
    net: &mien::classify::ExpressionNet,
    cfg: &TrainConfig,
    labels: &[Emotion],
    history: &[EpochStats],
    init_history: &[EpochStats],
    dataset: &Dataset,
    train_images: usize,
    reproduce: String,
) -> Result<()> {
    use mien::burn::module::Module;
    std::fs::create_dir_all(out)?;
    let weights = out.join("classifier.safetensors");
    // Saved as f32, then written as the app ships it: f16, and int8 with per-channel scales.
    let mut store = burn_store::SafetensorsStore::from_bytes(None);
    burn_store::ModuleSnapshot::save_into(net, &mut store).map_err(|e| anyhow::anyhow!("{e}"))?;
    let f32_bytes = store.get_bytes().map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::fsutil::write_atomic(
        &weights,
        &mien::weights::quantize(&f32_bytes, "classifier.safetensors", mien::weights::CLASSIFIER_INT8_MIN_ELEMENTS)?,
    )?;
    let bytes = std::fs::metadata(&weights)?.len();
    // Images per label in the training split (validation part included), never the test splits.
    let mut counts = serde_json::Map::new();
    let mut shares = Vec::new();
    let training = dataset.samples.iter().filter(|s| !is_test(s.usage.as_deref())).count().max(1);
    for label in labels {
        let n = dataset.samples.iter().filter(|s| s.label == *label && !is_test(s.usage.as_deref())).count();
        counts.insert(label.name().into(), n.into());
        shares.push((*label, n as f64 / training as f64));
    }
    let card = DataCard::of(dataset, cfg, labels, &shares, train_images);
    let mut info = serde_json::Map::new();
    info.insert("dataset".into(), dataset.root.display().to_string().into());
    info.insert("layout".into(), dataset.layout.to_string().into());
    info.insert("training_data".into(), card.training_data.into());
    info.insert("licences".into(), card.licences.into());
    info.insert(
        "architecture".into(),
        match cfg.layout {
            1 => format!(
                "ExpressionNet width {} (layout 1): strided conv stem, 5 depthwise-separable blocks with batch norm, global average pooling, linear head",
                cfg.width
            ),
            _ => format!(
                "ExpressionNet width {} (layout {}): conv stem, 7 depthwise-separable blocks (the first strided) with batch norm, global average pooling, linear head",
                cfg.width, cfg.layout
            ),
        }
        .into(),
    );
    info.insert("parameters".into(), net.num_params().into());
    info.insert("weights_bytes".into(), bytes.into());
    info.insert(
        "weights_storage".into(),
        format!(
            "f16, and int8 with one scale per output channel for tensors of {}+ elements (mien::weights::quantize); loaded as f32",
            mien::weights::CLASSIFIER_INT8_MIN_ELEMENTS
        )
        .into(),
    );
    info.insert("train_counts".into(), counts.into());
    info.insert("reproduce".into(), reproduce.into());
    info.insert("weaknesses".into(), card.weaknesses.into());
    info.insert("train_config".into(), serde_json::to_value(cfg)?);
    info.insert("history".into(), serde_json::to_value(history)?);
    if !init_history.is_empty() {
        // The epochs of the model this one was fine-tuned from (`train_config.init`), so its
        // learning curves can be read whole.
        info.insert("init_history".into(), serde_json::to_value(init_history)?);
    }
    // A model trained on the app's crops is cut as they were; any other keeps a crop margin
    // already tuned for this folder (`crop-check --tune`).
    let mut crop = cfg.app_crop.unwrap_or(CropConfig { size: cfg.input_size, ..CropConfig::default() });
    let manifest_path = out.join("manifest.json");
    if let Ok(old) = std::fs::read(&manifest_path)
        .map_err(|_| ())
        .and_then(|b| serde_json::from_slice::<ModelManifest>(&b).map_err(|_| ()))
    {
        if old.input_size == cfg.input_size && cfg.app_crop.is_none() {
            crop = old.crop;
            if let Some(t) = old.info.get("crop_tuning") {
                info.insert("crop_tuning".into(), t.clone());
            }
        }
    }
    let manifest = ModelManifest {
        schema_version: MANIFEST_SCHEMA_VERSION,
        labels: labels.to_vec(),
        input_size: cfg.input_size,
        mean: cfg.mean,
        std: cfg.std,
        crop,
        width: cfg.width,
        layout: cfg.layout,
        flip_average: true,
        info,
    };
    crate::fsutil::write_atomic(&manifest_path, &crate::json::pretty(&manifest)?)?;
    eprintln!(
        "model written to {} ({} labels: {:?}, {} bytes of weights)",
        out.display(),
        labels.len(),
        crate::report::label_names(labels),
        bytes
    );
    Ok(())
}

fn is_test(usage: Option<&str>) -> bool {
    matches!(usage, Some("PublicTest") | Some("PrivateTest"))
}

/// Which dataset a model learnt from, as a model card names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Fer2013,
    CkPlus,
    Other,
}

/// What a model card says about the data a model learnt from: derived from the dataset and the
/// settings the run actually used, never assumed.
struct DataCard {
    training_data: String,
    licences: String,
    weaknesses: String,
}

impl DataCard {
    fn of(dataset: &Dataset, cfg: &TrainConfig, labels: &[Emotion], shares: &[(Emotion, f64)], images: usize) -> Self {
        let ckplus_ids = dataset
            .samples
            .iter()
            .filter(|s| s.id.rsplit('/').next().and_then(datasets::ckplus_subject).is_some())
            .count();
        let source = match dataset.layout {
            datasets::Layout::Fer2013Csv | datasets::Layout::Fer2013Folders => Source::Fer2013,
            datasets::Layout::CkPlusOfficial => Source::CkPlus,
            _ if 2 * ckplus_ids > dataset.samples.len() => Source::CkPlus,
            _ => Source::Other,
        };
        let name = match source {
            Source::Fer2013 => "FER2013 train".to_string(),
            Source::CkPlus => format!("CK+ ({})", dataset.root.display()),
            Source::Other => dataset.root.display().to_string(),
        };
        let held_out = if cfg.no_validation {
            "no validation split".to_string()
        } else {
            format!("a seeded 10 % held out for validation, seed {}", cfg.seed)
        };
        let mut training_data = format!("{name} ({images} images for training, {held_out})");
        if source == Source::Fer2013 {
            training_data += "; PublicTest and PrivateTest never used for training or model selection";
        }
        if let Some(f) = &cfg.ferplus {
            training_data +=
                &format!("; labels: FERPlus's ten-annotator votes ({} mode)", format!("{:?}", f.mode).to_lowercase());
        }
        if let Some(csv) = &cfg.labels {
            training_data += &format!("; labels overridden by {csv}");
        }
        if let Some(init) = &cfg.init {
            training_data += &format!("; fine-tuned from the model in {init}");
        }
        if let Some(d) = &cfg.distill {
            training_data += &format!("; taught by {}", d.teachers.join(" and "));
        }
        let mut licences = vec![match source {
            Source::Fer2013 => "FER2013: research use only (Kaggle / ICML 2013 challenge)",
            Source::CkPlus => "CK+: research use only (the Cohn-Kanade database's terms)",
            Source::Other => "the dataset's own licence",
        }
        .to_string()];
        if cfg.ferplus.is_some() {
            licences.push("FERPlus labels: MIT (Microsoft)".into());
        }
        if cfg.init.is_some() || cfg.distill.is_some() {
            licences.push("and those of the data behind the models it builds on".into());
        }
        let licences = format!("{}; the weights are a research artefact and inherit these terms", licences.join("; "));
        let mut rare: Vec<&(Emotion, f64)> = shares.iter().collect();
        rare.sort_by(|a, b| a.1.total_cmp(&b.1));
        let rare: Vec<String> = rare
            .iter()
            .take(2)
            .map(|(e, share)| format!("{}: {:.1} % of training images", e.name(), 100.0 * share))
            .collect();
        let mut weaknesses = vec![format!(
            "Trained on {0}×{0} gray face crops: faces far from frontal, strong side light and the rarest classes ({1}) are recognised worst.",
            cfg.input_size,
            rare.join("; ")
        )];
        weaknesses.push(
            match (source, cfg.ferplus.is_some()) {
                (Source::Fer2013, false) => "Expressions are posed or spontaneous internet photos; labels are one annotator's reading.",
                (Source::Fer2013, true) => "Expressions are posed or spontaneous internet photos; labels are ten annotators' votes.",
                (Source::CkPlus, _) => "Expressions are posed in a lab by a few hundred people at most, frontal and evenly lit: expressions in everyday photos are recognised worse.",
                (Source::Other, _) => "Nothing is known of how the dataset's images were taken or labelled.",
            }
            .into(),
        );
        let missing: Vec<&str> = Emotion::ALL.iter().filter(|e| !labels.contains(e)).map(|e| e.name()).collect();
        if !missing.is_empty() {
            weaknesses.push(format!("No {} class.", missing.join(" or ")));
        }
        DataCard { training_data, licences, weaknesses: weaknesses.join(" ") }
    }
}
