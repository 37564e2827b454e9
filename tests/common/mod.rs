//! Shared helpers of the integration tests: paths to the shipped assets and the fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use mien::{DetectorConfig, FaceDetector, MtcnnWeights};

/// The repository under test. Cargo sets `CARGO_MANIFEST_DIR` when it runs a test, and that beats
/// the compile-time value: a test binary reused from a shared target dir (CI keeps one outside the
/// clone) may have been compiled in another checkout, whose files are gone or another commit's.
pub fn repo() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .filter(|d| d.join("Cargo.toml").is_file())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

pub fn fixture(rel: &str) -> PathBuf {
    repo().join("tests/fixtures").join(rel)
}

/// The weights the app ships: int8 with per-channel scales (`mien-trainer quantize`).
pub fn mtcnn_weights() -> MtcnnWeights {
    weights_in(&repo().join("assets/mtcnn"))
}

/// facenet-pytorch's f32 weights, as published; the shipped ones are quantised from these.
pub fn reference_mtcnn_weights() -> MtcnnWeights {
    weights_in(&repo().join("assets/mtcnn/reference"))
}

fn weights_in(dir: &Path) -> MtcnnWeights {
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(f).display()));
    MtcnnWeights { pnet: read("pnet.safetensors"), rnet: read("rnet.safetensors"), onet: read("onet.safetensors") }
}

/// The second opinion's O-Net as the app ships it, fine-tuned from `onet.safetensors`.
pub fn second_opinion_weights() -> Vec<u8> {
    let file = repo().join("assets/mtcnn").join(mien::detect::SECOND_OPINION_FILE);
    std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// The detector as the app runs it: the shipped weights and its second opinion.
pub fn detector() -> FaceDetector {
    FaceDetector::new(&mtcnn_weights(), DetectorConfig::default(), &burn::prelude::Device::flex())
        .expect("shipped MTCNN weights load")
        .with_second_opinion(&second_opinion_weights())
        .expect("the second opinion's weights load")
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes.
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
}

/// A minimal little-endian TIFF/EXIF block holding only the orientation tag.
pub fn exif_orientation(value: u16) -> Vec<u8> {
    let mut e = b"II*\0".to_vec();
    e.extend_from_slice(&8u32.to_le_bytes()); // first IFD offset
    e.extend_from_slice(&1u16.to_le_bytes()); // one entry
    e.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    e.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    e.extend_from_slice(&1u32.to_le_bytes()); // count
    e.extend_from_slice(&value.to_le_bytes());
    e.extend_from_slice(&[0, 0]);
    e.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    e
}
