//! What each fuzz target does with its bytes. Shared by the libFuzzer targets
//! (`fuzz/fuzz_targets/*.rs`, nightly) and the stable regression test that replays every input
//! kept in `fuzz/regressions/<target>/` (`trainer/tests/fuzz_regressions.rs`).
//!
//! A target's only failure is a panic, an abort or a sanitizer report: every `Err` is the
//! expected answer to bad bytes. Beyond "does not crash", each target asserts what the rest of
//! mien relies on (a crop has its promised size, a validated report can be indexed, ...).

use std::path::Path;
use std::sync::OnceLock;

use mien::burn::prelude::Device;
use mien::classify::ExpressionClassifier;
use mien::detect::{ONet, PNet, RNet};
use mien::metrics::{ConfusionMatrix, Report};
use mien::weights::load_pytorch_safetensors;
use mien::{crop_face, CropConfig, DetectorConfig, Face, FaceDetector, Frame, ModelManifest};
use mien_trainer::datasets::{ckplus_subject, parse_ckplus_emotion, parse_fer2013_csv, parse_overrides};
use mien_trainer::ferplus::{parse_alignment, parse_votes, FerPlusMode};

const MANIFEST: &[u8] = include_bytes!("../assets/model/manifest.json");
const CLASSIFIER: &[u8] = include_bytes!("../assets/model/classifier.safetensors");

/// Detection is run on decoded frames up to this many pixels: enough for every stage of the
/// cascade (a face fills a 64×64 seed: four pyramid levels, then R-Net and O-Net), small enough
/// for a million executions.
const DETECT_MAX_PIXELS: u64 = 64 * 64;

/// Largest side decoded by the image targets: the size checks and every decoder path are the
/// same as the app's (12,000), but no execution spends its time filling a huge buffer.
const DECODE_MAX_SIDE: u32 = 512;

fn detector() -> &'static FaceDetector {
    static D: OnceLock<FaceDetector> = OnceLock::new();
    D.get_or_init(|| {
        FaceDetector::new(&mien_trainer::detect::shipped_weights(), DetectorConfig::default(), &Device::flex())
            .expect("the shipped MTCNN weights load")
    })
}

fn f32_at(data: &[u8], i: usize) -> f32 {
    f32::from_le_bytes(data[4 * i..4 * i + 4].try_into().expect("4 bytes"))
}

/// Image bytes → decode → aligned crop. The first 56 bytes are an arbitrary face (box and
/// landmarks, any floats: NaN, infinities, boxes outside the frame), so every crop geometry is
/// tried on every decodable image.
pub fn image_to_crop(data: &[u8]) {
    if data.len() < 56 {
        return;
    }
    let (face_bytes, image) = data.split_at(56);
    let Ok(frame) = Frame::decode_within(image, DECODE_MAX_SIDE) else { return };
    assert!(frame.width() > 0 && frame.height() > 0);
    assert_eq!(frame.rgb().len() as u64, 3 * frame.width() as u64 * frame.height() as u64);
    let arbitrary = Face {
        bbox: [f32_at(face_bytes, 0), f32_at(face_bytes, 1), f32_at(face_bytes, 2), f32_at(face_bytes, 3)],
        score: 1.0,
        landmarks: std::array::from_fn(|k| [f32_at(face_bytes, 4 + 2 * k), f32_at(face_bytes, 5 + 2 * k)]),
    };
    // Small outputs: the sampling code is the same at any size, and a 48×48 crop's 150,000
    // instrumented bilinear samples would make each execution a hundred times slower.
    let size = 1 + u32::from(face_bytes[0] % 12);
    let configs = [
        CropConfig { size, ..CropConfig::default() },
        CropConfig { margin: f32_at(face_bytes, 13), shift: f32_at(face_bytes, 12), align: false, size },
    ];
    for config in &configs {
        let crop = crop_face(&frame, &arbitrary, config);
        assert_eq!(crop.pixels.len(), (config.size * config.size) as usize);
    }
}

/// Image bytes → decode → detect → aligned crop of every face found (the whole path of a dropped
/// photo). Frames above [`DETECT_MAX_PIXELS`] are decoded only.
pub fn image_to_faces(data: &[u8]) {
    let Ok(frame) = Frame::decode_within(data, DECODE_MAX_SIDE) else { return };
    if frame.width() as u64 * frame.height() as u64 > DETECT_MAX_PIXELS {
        return;
    }
    let faces = detector().detect(&frame).expect("detection of a decoded frame");
    for face in &faces {
        assert!(face.bbox.iter().all(|v| v.is_finite()), "{face:?}");
        assert!((0.0..=1.0).contains(&face.score), "{face:?}");
        let crop = crop_face(&frame, face, &CropConfig { size: 12, ..CropConfig::default() });
        assert_eq!(crop.pixels.len(), 12 * 12);
    }
}

/// Weight-file bytes → one of the MTCNN networks or the expression classifier (the first byte
/// picks which; the rest is the file).
pub fn weights(data: &[u8]) {
    static NETS: OnceLock<(PNet, RNet, ONet)> = OnceLock::new();
    let Some((&which, file)) = data.split_first() else { return };
    let (p, r, o) = NETS.get_or_init(|| {
        let d = Device::flex();
        (PNet::new(&d), RNet::new(&d), ONet::new(&d))
    });
    match which % 4 {
        0 => drop(load_pytorch_safetensors(p.clone(), file, "pnet.safetensors")),
        1 => drop(load_pytorch_safetensors(r.clone(), file, "rnet.safetensors")),
        2 => drop(load_pytorch_safetensors(o.clone(), file, "onet.safetensors")),
        _ => drop(ExpressionClassifier::load(MANIFEST, file, &Device::flex())),
    }
}

/// Manifest bytes → a validated manifest → the classifier with the shipped weights → one face.
pub fn model_manifest(data: &[u8]) {
    let Ok(manifest) = ModelManifest::from_json(data) else { return };
    // The network a manifest builds depends only on its label count and width, and loading the
    // same weights into it always ends the same way: load once per (labels, width) and reuse
    // the result (a million executions instead of 84 a second); the rest of the manifest (input
    // size, normalisation, crop) is what each execution exercises.
    type Loaded = Option<mien::classify::ExpressionNet>;
    static NETS: OnceLock<std::sync::Mutex<std::collections::HashMap<(usize, u64), Loaded>>> = OnceLock::new();
    let key = (manifest.labels.len(), manifest.width.to_bits());
    let mut nets = NETS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if nets.len() > 64 {
        nets.clear();
    }
    let net = nets
        .entry(key)
        .or_insert_with(|| ExpressionClassifier::load(data, CLASSIFIER, &Device::flex()).ok().map(|c| c.net().clone()))
        .clone();
    drop(nets);
    let Some(net) = net else { return };
    let classifier = ExpressionClassifier::from_net(net, manifest.clone(), &Device::flex());
    let size = manifest.input_size;
    let crop = mien::FaceCrop { size, pixels: vec![128; (size * size) as usize] };
    let probs = classifier.classify(&[&crop]).expect("classifying a crop of the manifest's size");
    assert_eq!(probs.len(), 1);
    assert_eq!(probs[0].len(), manifest.labels.len());
}

/// Dataset text → every reader of labels and names (the first byte picks the reader).
pub fn dataset_files(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let path = Path::new("fuzzed");
    match which % 6 {
        0 => {
            if let Ok(d) = parse_fer2013_csv(path, &text) {
                for s in &d.samples {
                    assert!(matches!(&s.pixels, mien_trainer::datasets::Pixels::Gray48(p) if p.len() == 48 * 48));
                }
            }
        }
        1 => {
            let _ = parse_overrides(path, &text);
        }
        2 => {
            let _ = parse_ckplus_emotion(path, &text);
        }
        3 => {
            for line in text.lines() {
                if let Some(s) = ckplus_subject(line) {
                    assert_eq!(s.len(), 4);
                }
                let _ = mien::Emotion::from_name(line);
            }
        }
        4 => {
            if let Ok(rows) = parse_votes(path, &text) {
                for v in rows.into_iter().flatten() {
                    for mode in [FerPlusMode::Majority, FerPlusMode::Soft] {
                        if let Some((_, target)) = v.target(mode) {
                            let sum: f32 = target.iter().sum();
                            assert!((sum - 1.0).abs() < 1e-4, "{v:?} {target:?}");
                        }
                    }
                }
            }
        }
        _ => {
            let _ = parse_alignment(path, &text);
        }
    }
}

/// Report JSON (what the dashboard fetches) → a validated report → the metrics recomputed from
/// its matrix, as the dashboard's tables index it.
pub fn report_json(data: &[u8]) {
    let Ok(r) = Report::from_json(data) else { return };
    let n = r.labels.len();
    for (i, row) in r.confusion_matrix.iter().enumerate() {
        assert!(i < n && row.len() == n);
    }
    let m = ConfusionMatrix { labels: r.labels.clone(), counts: r.confusion_matrix.clone() };
    let acc = m.accuracy();
    assert!((0.0..=1.0).contains(&acc), "{acc}");
    let per = m.per_class();
    assert!(per.values().all(|c| (0.0..=1.0).contains(&c.f1)));
    let f1 = m.macro_f1();
    assert!(f1.is_nan() || (0.0..=1.0).contains(&f1), "{f1}");
    let back = serde_json::to_vec(&r).expect("a report serialises");
    assert_eq!(Report::from_json(&back).expect("and reads back"), r);
}
