//! From a dataset on disk to training examples: face crops (cached), labels in the model's
//! order, FERPlus vote shares, and the split `train` makes (training images, a seeded
//! validation part, never the dataset's test splits).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mien::align::CropConfig;
use mien::Emotion;

use crate::crops::crops_of;
use crate::datasets::{self, Dataset};
use crate::detect::detector;
use crate::ferplus::FerPlusLabels;
use crate::train::{Example, TrainConfig};

/// Examples, the subject of each, and the label list.
pub type Examples = (Vec<Example>, Vec<Option<String>>, Vec<Emotion>);

/// Examples of a dataset, with their subjects and the label list (canonical order of the
/// emotions present). Unusable images are skipped and counted, never fatal.
pub fn examples_of(dataset: &Dataset, crop: &CropConfig) -> Result<Examples> {
    let labels = dataset.labels();
    // Full frames (the CK+ official layout, or photos in class folders) need the detector; images
    // no larger than a face crop are used as they are.
    let needs_detector = dataset.samples.iter().any(|s| matches!(s.pixels, datasets::Pixels::File(_)));
    let det = if needs_detector { Some(detector(20.0)?) } else { None };
    let cache = crop_cache_dir();
    let crops = crops_of(&dataset.samples, crop, det.as_ref(), Some(&cache));
    let mut examples = Vec::new();
    let mut subjects = Vec::new();
    let mut skipped = 0;
    for (sample, crop) in dataset.samples.iter().zip(crops) {
        match crop {
            Ok(c) => {
                examples.push(Example {
                    pixels: c.pixels,
                    label: labels.iter().position(|&l| l == sample.label).unwrap_or(0),
                    soft: sample.votes.as_ref().map(|v| soft_target(v, &labels)),
                    dataset_pixels: None,
                });
                subjects.push(sample.subject.clone());
            }
            Err(s) => {
                skipped += 1;
                if skipped <= 5 {
                    eprintln!("skipped {}: {}", s.id, s.reason);
                }
            }
        }
    }
    if skipped > 0 {
        eprintln!("{skipped} of {} images skipped (unreadable or no face)", dataset.samples.len());
    }
    anyhow::ensure!(!examples.is_empty(), "{}: no usable images", dataset.root.display());
    Ok((examples, subjects, labels))
}

/// Vote shares (in [`Emotion::ALL`] order) as a target over `labels`, renormalised (an emotion
/// outside the label list gives up its share).
fn soft_target(votes: &[f32], labels: &[Emotion]) -> Vec<f32> {
    let v: Vec<f32> = labels.iter().map(|l| votes.get(l.index()).copied().unwrap_or(0.0)).collect();
    let sum: f32 = v.iter().sum();
    if sum > 0.0 {
        v.into_iter().map(|x| x / sum).collect()
    } else {
        v
    }
}

/// The trainer's cache: `$MIEN_CACHE`, default `~/.cache/mien`.
/// A seeded sample of `n` of a dataset's training images (its test splits are never read), as
/// examples cut with `crop`: what the detection examples (`trainer/examples/`) measure on.
pub fn training_sample(data: &Path, crop: &CropConfig, n: usize, seed: u64) -> Result<Vec<Example>> {
    let mut sample = shuffled_training_images(data, crop, seed)?;
    sample.truncate(n);
    Ok(sample.into_iter().map(|(e, _)| e).collect())
}

/// The first `n` images of the order [`training_sample`] draws with `seed` (dataset crops as they
/// are), less the training copies of test images: a sample whose first images are the detection
/// examples' and whose others can be trained on without touching what those examples measure.
pub fn training_sample_without_test_copies(data: &Path, n: usize, seed: u64) -> Result<Vec<Example>> {
    let mut sample = shuffled_training_images(data, &CropConfig::default(), seed)?;
    sample.truncate(n);
    Ok(sample.into_iter().filter(|(_, copy)| !copy).map(|(e, _)| e).collect())
}

/// A dataset's training images in a seeded order, each with whether it is a copy of a test image.
fn shuffled_training_images(data: &Path, crop: &CropConfig, seed: u64) -> Result<Vec<(Example, bool)>> {
    let mut dataset = open_dataset(data, None, None)?;
    let copies = dataset.training_copies_of_test_images();
    dataset.samples.retain(|s| !matches!(s.usage.as_deref(), Some("PublicTest") | Some("PrivateTest")));
    let is_copy: Vec<bool> = dataset.samples.iter().map(|s| copies.contains(&s.id)).collect();
    let (examples, _, _) = examples_of(&dataset, crop)?;
    anyhow::ensure!(
        examples.len() == is_copy.len(),
        "{}: {} of {} training images could not be read",
        data.display(),
        is_copy.len() - examples.len(),
        is_copy.len()
    );
    let mut sample: Vec<(Example, bool)> = examples.into_iter().zip(is_copy).collect();
    crate::augment::SplitMix64::new(seed).shuffle(&mut sample);
    Ok(sample)
}

pub fn cache_dir() -> PathBuf {
    std::env::var_os("MIEN_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir).join(".cache/mien")
    })
}

/// Where face crops of full frames are cached: `$MIEN_CACHE/crops`, default `~/.cache/mien/crops`.
fn crop_cache_dir() -> PathBuf {
    cache_dir().join("crops")
}

/// Opens a dataset, with FERPlus's labels and a labels-override CSV (`--labels`) where asked.
pub fn open_dataset(path: &Path, ferplus: Option<&FerPlusLabels>, overrides: Option<&str>) -> Result<Dataset> {
    let mut d = datasets::open(path)?;
    eprintln!("{}: recognised as {}; {} images", path.display(), d.layout, d.samples.len());
    if let Some(f) = ferplus {
        crate::ferplus::apply_ferplus(&mut d, Path::new(&f.dir), f.mode)?;
    }
    if let Some(csv) = overrides {
        let changes = datasets::apply_overrides(&mut d, Path::new(csv))?;
        eprintln!("{csv}: {} labels changed", changes.len());
        for change in changes.iter().take(5) {
            eprintln!("  {change}");
        }
    }
    for note in &d.notes {
        eprintln!("note: {note}");
    }
    Ok(d)
}

/// A dataset split as `train` splits it: the images it trains on, the validation part (10 % of
/// subjects, or samples, drawn with the run's seed; none with `--no-validation`), and the label
/// list. Never the dataset's test splits, nor training copies of their images.
pub struct TrainingSplit {
    pub dataset: Dataset,
    pub train: Vec<Example>,
    pub val: Vec<Example>,
    pub labels: Vec<Emotion>,
}

/// Opens a dataset with the labels a run with `cfg` trains on.
pub fn open_for_run(data: &Path, cfg: &TrainConfig) -> Result<Dataset> {
    open_dataset(data, cfg.ferplus.as_ref(), cfg.labels.as_deref())
}

pub fn training_split(data: &Path, cfg: &TrainConfig) -> Result<TrainingSplit> {
    split(data, cfg, true)
}

/// The validation part of [`training_split`] alone (`train` left empty): what scoring on it
/// needs, without cutting the app's crops of the training images.
pub fn validation_split(data: &Path, cfg: &TrainConfig) -> Result<TrainingSplit> {
    split(data, cfg, false)
}

fn split(data: &Path, cfg: &TrainConfig, with_train: bool) -> Result<TrainingSplit> {
    let mut dataset = open_for_run(data, cfg)?;
    let copies = dataset.training_copies_of_test_images();
    if !copies.is_empty() {
        dataset.samples.retain(|s| !copies.contains(&s.id));
        eprintln!("left out {} training images identical to a test-split image", copies.len());
    }
    let crop = CropConfig { size: cfg.input_size, ..CropConfig::default() };
    let usage: Vec<Option<String>> = dataset.samples.iter().map(|s| s.usage.clone()).collect();
    let (examples, subjects, labels) = examples_of(&dataset, &crop)?;
    let folds = crate::cv::subject_folds(&subjects, 10, cfg.seed);
    let (mut tr, mut val) = (Vec::new(), Vec::new());
    for ((ex, fold), usage) in examples.into_iter().zip(folds).zip(usage) {
        match usage.as_deref() {
            Some("PublicTest") | Some("PrivateTest") => {}
            _ if fold == 0 && !cfg.no_validation => val.push(ex),
            _ => tr.push(ex),
        }
    }
    if !with_train {
        tr.clear();
    }
    if cfg.app_crops {
        let crop = cfg.app_crop.context("--app-crops without a crop convention (the run resolves it from --init)")?;
        if with_train {
            crate::appcrops::to_app_crops(&mut tr, &crop, cfg.seed, "training images")?;
        }
        crate::appcrops::to_app_crops(&mut val, &crop, cfg.seed ^ 1, "validation images")?;
    }
    Ok(TrainingSplit { dataset, train: tr, val, labels })
}
