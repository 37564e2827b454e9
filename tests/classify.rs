//! The shipped expression model through the whole pipeline (MTCNN → aligned crop → classifier),
//! on real photos, and its loader on broken files.

mod common;

use burn::prelude::Device;
use common::{detector, fixture, repo};
use mien::classify::ClassifierError;
use mien::{Emotion, ExpressionClassifier, ExpressionRecognizer, Frame};

fn model_files() -> (Vec<u8>, Vec<u8>) {
    let dir = repo().join("assets/model");
    (std::fs::read(dir.join("manifest.json")).unwrap(), std::fs::read(dir.join("classifier.safetensors")).unwrap())
}

fn recognizer() -> ExpressionRecognizer {
    let (manifest, weights) = model_files();
    let classifier = ExpressionClassifier::load(&manifest, &weights, &Device::flex()).expect("the shipped model loads");
    ExpressionRecognizer::new(detector(), classifier)
}

fn emotion_of(r: &ExpressionRecognizer, photo: &str) -> (Emotion, Vec<f32>) {
    let frame = Frame::decode(&std::fs::read(fixture(photo)).unwrap()).unwrap();
    let analysis = r.analyze(&frame, None).unwrap();
    let face = analysis
        .faces
        .iter()
        .max_by(|a, b| (a.face.width() * a.face.height()).total_cmp(&(b.face.width() * b.face.height())))
        .unwrap_or_else(|| panic!("{photo}: no face"));
    (analysis.labels[face.top().0], face.probabilities.clone())
}

#[test]
fn shipped_model_is_small_and_describes_itself() {
    let (manifest, weights) = model_files();
    assert!(weights.len() <= 5_000_000, "weights are {} bytes (budget 5 MB)", weights.len());
    let c = ExpressionClassifier::load(&manifest, &weights, &Device::flex()).unwrap();
    let m = c.manifest();
    assert_eq!(m.input_size, 48);
    assert_eq!(m.labels.len(), 7, "FER2013's seven emotions: {:?}", m.labels);
    assert!(!m.labels.contains(&Emotion::Contempt));
    for key in ["training_data", "licences", "reproduce", "history", "train_counts", "metrics"] {
        assert!(m.info.contains_key(key), "manifest info lacks {key}");
    }
    // Its test figures are those of the committed reports, as `evaluate --record` writes them: a
    // model copied in without them, or reports left from another model, fail here.
    for (key, report) in [("fer2013", "fer2013_publictest.json"), ("CK+48", "ckplus_shipped.json")] {
        let recorded = &m.info["metrics"][key];
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(repo().join("reports").join(report)).unwrap()).unwrap();
        assert_eq!(recorded["accuracy"], report["accuracy"], "{key}: the manifest says {recorded}");
        assert_eq!(recorded["macro_f1"], report["macro_f1"], "{key}: the manifest says {recorded}");
    }
}

/// The shipped weights are stored as `export` writes them: int8 (with per-channel scales) for the
/// tensors of `CLASSIFIER_INT8_MIN_ELEMENTS`+ weights, f16 for the other weight tensors, f32 for
/// biases and batch-norm statistics. A model copied in some other form would download bigger.
#[test]
fn shipped_weights_are_int8_for_large_tensors_and_f16_for_small_ones() {
    use safetensors::Dtype;
    let (_, weights) = model_files();
    let st = safetensors::SafeTensors::deserialize(&weights).unwrap();
    let mut int8 = 0;
    for (name, view) in st.tensors() {
        if name.ends_with(mien::weights::SCALE_SUFFIX) {
            continue;
        }
        let n: usize = view.shape().iter().product();
        let want = if view.shape().len() < 2 || n < mien::weights::COMPACT_MIN_ELEMENTS {
            Dtype::F32
        } else if n < mien::weights::CLASSIFIER_INT8_MIN_ELEMENTS {
            Dtype::F16
        } else {
            int8 += 1;
            Dtype::I8
        };
        assert_eq!(view.dtype(), want, "{name} {:?}", view.shape());
    }
    assert!(int8 >= 4, "only {int8} int8 tensors");
}

#[test]
fn broad_smiles_read_as_happiness() {
    let r = recognizer();
    for photo in ["faces/astronaut_eileen_collins.png", "faces/obama_portrait_small.jpg"] {
        let (emotion, probs) = emotion_of(&r, photo);
        assert_eq!(emotion, Emotion::Happiness, "{photo}: {probs:?}");
        let sum: f32 = probs.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "{photo}: probabilities sum to {sum}");
    }
}

#[test]
fn a_mirrored_face_gets_the_same_probabilities() {
    // The manifest averages each crop with its mirror image, so a mirrored crop gets the same
    // probabilities, up to the order of float additions.
    let r = recognizer();
    assert!(r.classifier.manifest().flip_average);
    let bytes = std::fs::read(fixture("faces/grace_hopper.jpg")).unwrap();
    let img = image::load_from_memory(&bytes).unwrap();
    let frame = Frame::from_dynamic(&img);
    let a = r.analyze(&frame, None).unwrap();
    assert_eq!(a.faces.len(), 1);
    let crop = mien::crop_face(&frame, &a.faces[0].face, &r.classifier.manifest().crop);
    let size = crop.size as usize;
    let mirrored = mien::FaceCrop {
        size: crop.size,
        pixels: crop.pixels.chunks(size).flat_map(|row| row.iter().rev().copied()).collect(),
    };
    assert_ne!(crop.pixels, mirrored.pixels);
    let p = r.classifier.classify(&[&crop, &mirrored]).unwrap();
    let worst = p[0].iter().zip(&p[1]).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-5, "{:?} vs {:?}", p[0], p[1]);

    // One view at a time (the live page's followed frames): the crop alone is the mirrored
    // crop's mirror image, and the two views average to what the manifest's both-views give.
    let block = |views| pollster::block_on(r.classifier.classify_views_async(&[&crop, &mirrored], views)).unwrap();
    let plain = block(mien::Views::One { mirrored: false });
    let flipped = block(mien::Views::One { mirrored: true });
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(close(&plain[0], &flipped[1]) < 1e-5, "{:?} vs {:?}", plain[0], flipped[1]);
    assert!(close(&plain[0], &plain[1]) > 1e-3, "the two views of a face should differ: {:?}", plain);
    let mean: Vec<f32> = plain[0].iter().zip(&flipped[0]).map(|(x, y)| (x + y) / 2.0).collect();
    assert!(close(&mean, &p[0]) < 1e-5, "{mean:?} vs {:?}", p[0]);

    // A mirrored photo changes the answer only through the detector (its boxes and landmarks are
    // not exactly mirror-symmetric) and resampling: the same emotion wins.
    let b = r.analyze(&Frame::from_dynamic(&img.fliph()), None).unwrap();
    assert_eq!(b.faces.len(), 1);
    let (pa, pb) = (&a.faces[0].probabilities, &b.faces[0].probabilities);
    assert_eq!(a.faces[0].top().0, b.faces[0].top().0, "{pa:?} vs {pb:?}");
}

#[test]
fn broken_model_files_are_named_errors() {
    let (manifest, weights) = model_files();
    let device = Device::flex();
    match ExpressionClassifier::load(&manifest, &[], &device) {
        Err(ClassifierError::Weights { file, reason }) => {
            assert_eq!(file, "classifier.safetensors");
            assert!(reason.contains("empty"), "{reason}");
        }
        other => panic!("empty weights: {other:?}"),
    }
    assert!(matches!(
        ExpressionClassifier::load(&manifest, &weights[..weights.len() / 2], &device),
        Err(ClassifierError::Weights { .. })
    ));
    assert!(matches!(ExpressionClassifier::load(b"{not json", &weights, &device), Err(ClassifierError::Manifest(_))));
    // A manifest that promises more labels than the weights have outputs.
    let mut m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    m["labels"].as_array_mut().unwrap().push("contempt".into());
    let m = serde_json::to_vec(&m).unwrap();
    match ExpressionClassifier::load(&m, &weights, &device) {
        Err(ClassifierError::Weights { reason, .. }) => {
            assert!(reason.contains("head") || reason.contains("shape"), "{reason}")
        }
        other => panic!("mismatched labels: {other:?}"),
    }
    // A manifest naming the other layer layout than the weights were trained as: a layer one
    // layout has and the other lacks is named, with the layout the manifest claims.
    let mut m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let layout = m.get("layout").and_then(|l| l.as_u64()).unwrap_or(1);
    m["layout"] = (3 - layout).into();
    match ExpressionClassifier::load(&serde_json::to_vec(&m).unwrap(), &weights, &device) {
        Err(ClassifierError::Weights { reason, .. }) => {
            assert!(reason.contains("missing") && reason.contains(&format!("layout {}", 3 - layout)), "{reason}")
        }
        other => panic!("layout {} weights read as layout {}: {other:?}", layout, 3 - layout),
    }
}

#[test]
fn manifests_outside_what_a_browser_can_run_are_refused_by_field() {
    let (manifest, weights) = model_files();
    let device = Device::flex();
    let good: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    // Each edit names the field in the error, before any network is built or weight read.
    let cases: [(&str, serde_json::Value, &str); 8] = [
        ("width", 1e9.into(), "width"),
        ("layout", 3.into(), "layout"),
        ("input_size", 0.into(), "input_size"),
        ("input_size", 100_000.into(), "input_size"),
        ("std", 0.0.into(), "std"),
        ("labels", serde_json::json!(["happiness", "happiness"]), "twice"),
        ("labels", serde_json::json!(["happiness"]), "at least 2"),
        ("schema_version", 2.into(), "schema_version"),
    ];
    for (field, value, says) in cases {
        let mut m = good.clone();
        m[field] = value.clone();
        match ExpressionClassifier::load(&serde_json::to_vec(&m).unwrap(), &weights, &device) {
            Err(ClassifierError::Manifest(why)) => assert!(why.contains(says), "{field}={value}: {why}"),
            other => panic!("{field}={value}: {other:?}"),
        }
    }
}
