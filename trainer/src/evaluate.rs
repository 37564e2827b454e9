//! Scoring model folders: on a dataset's test split, on the validation split a model's own run
//! held out, alone or as an ensemble, through the same classifier code the app runs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mien::align::FaceCrop;
use mien::burn::prelude::Device;
use mien::classify::{argmax, ExpressionClassifier, ModelManifest};
use mien::metrics::{ConfusionMatrix, Report};
use mien::Emotion;

use crate::datasets::Dataset;
use crate::examples::{examples_of, open_dataset, validation_split};
use crate::ferplus::FerPlusLabels;
use crate::report::{label_names, print_report, write_report};
use crate::train::{Example, TrainConfig};

/// The training settings a model folder's manifest records (`train_config`): which images its
/// run held out for validation follows from them.
pub(crate) fn train_config_of(manifest: &ModelManifest, model: &Path) -> Result<TrainConfig> {
    manifest
        .info
        .get("train_config")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .with_context(|| format!("{}/manifest.json: train_config is not a training configuration", model.display()))?
        .with_context(|| {
            format!("{}/manifest.json has no train_config: which split was validation is not known", model.display())
        })
}

/// The model folder the web app ships (`assets/model` of this repository).
pub fn shipped_model_dir() -> PathBuf {
    crate::repo_root().join("assets/model")
}

/// How a model folder is named in reports: the shipped one by its place in the repository (not
/// the checkout's absolute path), others as given.
pub fn model_label(model: &Path) -> String {
    let shipped = shipped_model_dir();
    let same = match (model.canonicalize(), shipped.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => model == shipped,
    };
    if same {
        "assets/model".to_string()
    } else {
        model.display().to_string()
    }
}

/// Loads a model folder (`manifest.json` + `classifier.safetensors`) onto the CPU backend.
pub fn load_classifier(model: &Path) -> Result<ExpressionClassifier> {
    let manifest = std::fs::read(model.join("manifest.json")).with_context(|| {
        format!(
            "reading {}/manifest.json (a model folder holds manifest.json and classifier.safetensors)",
            model.display()
        )
    })?;
    let weights = std::fs::read(model.join("classifier.safetensors"))
        .with_context(|| format!("reading {}/classifier.safetensors", model.display()))?;
    ExpressionClassifier::load(&manifest, &weights, &Device::flex())
        .with_context(|| format!("loading the model in {}", model.display()))
}

/// Confusion matrix of a classifier on crops, through the same code the browser runs
/// (normalisation and test-time flip from the manifest).
pub fn evaluate_classifier(classifier: &ExpressionClassifier, examples: &[Example]) -> Result<ConfusionMatrix> {
    evaluate_ensemble(std::slice::from_ref(classifier), examples)
}

/// [`evaluate_classifier`] for the mean of several classifiers' probabilities (an ensemble: how
/// a distillation run with several `--teacher`s sees them). All take the first one's crops.
pub fn evaluate_ensemble(classifiers: &[ExpressionClassifier], examples: &[Example]) -> Result<ConfusionMatrix> {
    let manifest = classifiers.first().context("no model to evaluate")?.manifest();
    for other in &classifiers[1..] {
        let o = other.manifest();
        anyhow::ensure!(
            o.labels == manifest.labels && o.input_size == manifest.input_size,
            "the models of an ensemble need the same labels and input size: {:?} {}×{} and {:?} {}×{}",
            manifest.labels,
            manifest.input_size,
            manifest.input_size,
            o.labels,
            o.input_size,
            o.input_size
        );
    }
    let mut m = ConfusionMatrix::new(label_names(&manifest.labels));
    for chunk in examples.chunks(256) {
        let crops: Vec<FaceCrop> =
            chunk.iter().map(|e| FaceCrop { size: manifest.input_size, pixels: e.pixels.clone() }).collect();
        let refs: Vec<&FaceCrop> = crops.iter().collect();
        let mut sum = vec![vec![0.0f32; manifest.labels.len()]; chunk.len()];
        for classifier in classifiers {
            for (s, p) in sum.iter_mut().zip(classifier.classify(&refs)?) {
                s.iter_mut().zip(p).for_each(|(s, p)| *s += p);
            }
        }
        for (p, e) in sum.iter().zip(chunk) {
            m.add(e.label, argmax(p));
        }
    }
    Ok(m)
}

/// Which images of a dataset `evaluate` scores: its own test split (FER2013's PublicTest,
/// PrivateTest or both), or, for a dataset without one, every image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TestSplit {
    /// FER2013's PublicTest (the project's test split).
    Public,
    /// FER2013's PrivateTest.
    Private,
    /// PublicTest and PrivateTest together.
    Both,
    /// Every image: for datasets without a test split, such as CK+ for a model trained on FER2013.
    All,
}

impl TestSplit {
    /// How reports and model cards name it.
    pub fn name(self) -> &'static str {
        match self {
            TestSplit::Public => "PublicTest",
            TestSplit::Private => "PrivateTest",
            TestSplit::Both => "PublicTest+PrivateTest",
            TestSplit::All => "all",
        }
    }

    fn keeps(self, usage: Option<&str>) -> bool {
        match self {
            TestSplit::Public => usage == Some("PublicTest"),
            TestSplit::Private => usage == Some("PrivateTest"),
            TestSplit::Both => matches!(usage, Some("PublicTest") | Some("PrivateTest")),
            TestSplit::All => true,
        }
    }

    /// The split to score on `dataset`: `requested` if given (refused where it holds no image),
    /// else the dataset's PublicTest, else its PrivateTest, else every image, said aloud: a
    /// dataset whose test images are missing must not be scored as if its training images were
    /// a hold-out.
    pub fn of(dataset: &Dataset, requested: Option<TestSplit>) -> Result<TestSplit> {
        let has = |split: TestSplit| dataset.samples.iter().any(|s| split.keeps(s.usage.as_deref()));
        let has_training = dataset.samples.iter().any(|s| s.usage.as_deref() == Some("Training"));
        let split = match requested {
            Some(split) => {
                anyhow::ensure!(
                    has(split),
                    "{}: --split {}: the dataset has no {} image",
                    dataset.root.display(),
                    split.name().to_lowercase(),
                    split.name()
                );
                split
            }
            None if has(TestSplit::Public) => TestSplit::Public,
            None if has(TestSplit::Private) => TestSplit::Private,
            None => TestSplit::All,
        };
        match split {
            TestSplit::All if has_training => eprintln!(
                "warning: {} has a training split and no test split: scoring every image, training images \
                 included (the figures say how well it fits them, not how well it generalises)",
                dataset.root.display()
            ),
            TestSplit::All => eprintln!("{}: no test split; scoring every image", dataset.root.display()),
            _ => {}
        }
        Ok(split)
    }
}

/// The samples of `dataset` in `split`, only labels the model knows, re-indexed to the model's
/// label order.
pub fn holdout_examples(dataset: &mut Dataset, manifest: &ModelManifest, split: TestSplit) -> Result<Vec<Example>> {
    dataset.samples.retain(|s| split.keeps(s.usage.as_deref()));
    eprintln!("evaluating on {}: {} images", split.name(), dataset.samples.len());
    let before = dataset.samples.len();
    dataset.samples.retain(|s| manifest.labels.contains(&s.label));
    if dataset.samples.len() < before {
        eprintln!("{} images of labels the model does not have are left out", before - dataset.samples.len());
    }
    let (examples, _, labels) = examples_of(dataset, &manifest.crop)?;
    in_model_order(examples, &labels, manifest)
}

/// `examples` labelled by index into `labels` (a dataset's order), re-labelled by index into the
/// model's; a label the model does not have is an error.
fn in_model_order(examples: Vec<Example>, labels: &[Emotion], manifest: &ModelManifest) -> Result<Vec<Example>> {
    examples
        .into_iter()
        .map(|e| {
            let label = manifest.labels.iter().position(|l| *l == labels[e.label]);
            label
                .map(|label| Example { label, ..e })
                .with_context(|| format!("the dataset has the label {:?}, which the model does not", labels[e.label]))
        })
        .collect()
}

/// Evaluates a saved model folder on the validation split its training run held out: the split is
/// rebuilt from the manifest's `train_config` (seed, labels, input size) exactly as `train` and
/// `average` build it, and scored as the app scores (the classifier, with its test-time flip).
///
/// With several models, scores the mean of their probabilities (an ensemble, such as the
/// teachers of a distillation run). Their runs must have held out the same split (the same
/// seed, with validation): otherwise one model's validation images trained another.
pub fn evaluate_on_validation(
    models: &[PathBuf],
    data: &Path,
    report: &Path,
    other_labels: bool,
    app_crops: bool,
) -> Result<()> {
    anyhow::ensure!(
        !other_labels,
        "--validation scores with the labels the model trained on (its train_config); leave out --ferplus"
    );
    let models = if models.is_empty() { vec![shipped_model_dir()] } else { models.to_vec() };
    let mut classifiers = Vec::new();
    let mut configs = Vec::new();
    for model in &models {
        let classifier = load_classifier(model)?;
        let cfg = train_config_of(classifier.manifest(), model)?;
        anyhow::ensure!(
            !cfg.no_validation,
            "{} was trained without a validation split (--no-validation)",
            model.display()
        );
        classifiers.push(classifier);
        configs.push(cfg);
    }
    let mut cfg = configs[0].clone();
    if app_crops && !cfg.app_crops {
        cfg.app_crops = true;
        cfg.app_crop = Some(classifiers[0].manifest().crop);
    }
    let cfg = &cfg;
    for (model, other) in models.iter().zip(&configs).skip(1) {
        anyhow::ensure!(
            other.same_validation_split(cfg),
            "{} held out another validation split (seed {}) than {} (seed {}): it trained on some of the images scored",
            model.display(),
            other.seed,
            models[0].display(),
            cfg.seed
        );
    }
    let split = validation_split(data, cfg)?;
    let manifest = classifiers[0].manifest();
    let examples = in_model_order(split.val, &split.labels, manifest)?;
    eprintln!(
        "evaluating on the validation split of the model's training run (seed {}): {} images",
        cfg.seed,
        examples.len()
    );
    let m = evaluate_ensemble(&classifiers, &examples)?;
    print_report("validation", &m);
    let mut r = Report::from_confusion(&m);
    r.meta.insert("kind".into(), "validation".into());
    let labels: Vec<String> = models.iter().map(|m| model_label(m)).collect();
    r.meta.insert("model".into(), labels.join(" + ").into());
    r.meta.insert("dataset".into(), data.display().to_string().into());
    r.meta.insert("flip_average".into(), manifest.flip_average.into());
    r.meta.insert("crops".into(), if cfg.app_crops { "the app's" } else { "the dataset's" }.into());
    write_report(report, &serde_json::to_value(&r)?)
}

/// What `evaluate` scores and where it writes.
pub struct Evaluation<'a> {
    /// The model folder (default: the shipped one).
    pub model: Option<&'a Path>,
    pub data: &'a Path,
    pub report: &'a Path,
    /// Also record the figures in the model's manifest (its model card).
    pub record: bool,
    pub ferplus: Option<&'a FerPlusLabels>,
    /// A labels-override CSV.
    pub labels: Option<&'a str>,
    /// The split to score (default: [`TestSplit::of`]).
    pub split: Option<TestSplit>,
}

/// Evaluates a saved model folder on a dataset's test split ([`TestSplit`]), writes the report
/// and its confusion-matrix plot, and with `record` the figures into the model card.
pub fn evaluate_model(e: Evaluation) -> Result<()> {
    let Evaluation { model, data, report, record, ferplus, labels, split } = e;
    let model = model.map(Path::to_path_buf).unwrap_or_else(shipped_model_dir);
    let classifier = load_classifier(&model)?;
    let mut dataset = open_dataset(data, ferplus, labels)?;
    let split = TestSplit::of(&dataset, split)?;
    let seen = dataset.test_images_seen_in_training();
    let mut unseen_only = dataset.clone();
    let examples = holdout_examples(&mut dataset, classifier.manifest(), split)?;
    let m = evaluate_classifier(&classifier, &examples)?;
    print_report("hold-out evaluation", &m);
    let mut r = Report::from_confusion(&m);
    if !seen.is_empty() {
        // The same evaluation without the test images that also sit, byte for byte, in training.
        unseen_only.samples.retain(|s| !seen.contains(&s.id));
        let clean =
            evaluate_classifier(&classifier, &holdout_examples(&mut unseen_only, classifier.manifest(), split)?)?;
        eprintln!(
            "without the {} test images that have an identical copy in the training split: accuracy {:.2}% ({} of {}), macro-F1 {:.3}",
            m.total() - clean.total(),
            100.0 * clean.accuracy(),
            clean.correct(),
            clean.total(),
            clean.macro_f1()
        );
        r.meta.insert(
            "without_training_copies".into(),
            serde_json::json!({
                "images_left_out": m.total() - clean.total(), "images": clean.total(),
                "accuracy": clean.accuracy(), "macro_f1": clean.macro_f1(),
            }),
        );
    }
    r.meta.insert("kind".into(), "hold_out".into());
    r.meta.insert("split".into(), split.name().into());
    if let Some(csv) = labels {
        r.meta.insert("labels_override".into(), csv.into());
    }
    if let Some(f) = ferplus {
        r.meta.insert("ferplus".into(), serde_json::to_value(f)?);
    }
    r.meta.insert("model".into(), model_label(&model).into());
    r.meta.insert("dataset".into(), data.display().to_string().into());
    r.meta.insert("layout".into(), dataset.layout.to_string().into());
    r.meta.insert("flip_average".into(), classifier.manifest().flip_average.into());
    write_report(report, &serde_json::to_value(&r)?)?;
    let png = report.with_extension("confusion.png");
    crate::plots::confusion_png(&png, &m.labels, &m.counts)?;
    eprintln!("confusion matrix plot written to {}", png.display());
    if record {
        // The model card carries its own headline numbers, keyed by the dataset's folder name.
        let path = model.join("manifest.json");
        let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        let key = data.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "dataset".into());
        manifest["info"]["metrics"][&key] = serde_json::json!({
            "accuracy": r.accuracy, "macro_f1": r.macro_f1, "images": m.total(),
            "split": split.name(),
            "report": report.display().to_string(),
        });
        crate::fsutil::write_atomic(&path, &crate::json::pretty(&manifest)?)?;
        eprintln!("accuracy recorded in {}", path.display());
    }
    Ok(())
}
