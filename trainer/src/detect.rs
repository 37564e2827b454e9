//! `mien-trainer detect`: faces in image files, as a table or as JSON lines.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use mien::burn::prelude::Device;
use mien::{DetectorConfig, Face, FaceDetector, Frame, MtcnnWeights};
use serde::Serialize;

use crate::augment::SplitMix64;

/// The shipped MTCNN weights, built into the binary so the CLI works from any directory.
pub fn shipped_weights() -> MtcnnWeights {
    MtcnnWeights {
        pnet: include_bytes!("../../assets/mtcnn/pnet.safetensors").to_vec(),
        rnet: include_bytes!("../../assets/mtcnn/rnet.safetensors").to_vec(),
        onet: include_bytes!("../../assets/mtcnn/onet.safetensors").to_vec(),
    }
}

/// The second opinion's O-Net as shipped ([`mien::detect::SECOND_OPINION_FILE`]).
pub fn shipped_second_opinion() -> &'static [u8] {
    include_bytes!("../../assets/mtcnn/onet_faces.safetensors")
}

/// The detector as the app runs it (its second opinion too), searching faces from `min_face` pixels.
pub fn detector(min_face: f32) -> Result<FaceDetector> {
    let config = DetectorConfig { min_face_size: min_face, ..DetectorConfig::default() };
    FaceDetector::new(&shipped_weights(), config, &Device::flex())
        .and_then(|d| d.with_second_opinion(shipped_second_opinion()))
        .context("loading the MTCNN weights")
}

/// Frames without a face, to count the faces a detector setting raises where there are none:
/// square cuts of the fixture photos that touch no reference face (grown by half its size),
/// resized to 64–363 px, and the faceless fixtures as they are (152 frames with seed 3).
pub fn faceless_frames(rng: &mut SplitMix64) -> Result<Vec<Frame>> {
    let tests = crate::repo_root().join("tests");
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tests.join("fixtures/reference_mtcnn_detections.json"))?)?;
    let mut out = Vec::new();
    let images = reference["images"].as_object().context("reference detections: no images")?;
    for (path, entry) in images {
        let frame = Frame::decode(&std::fs::read(tests.join(path))?)?;
        let img = image::RgbImage::from_raw(frame.width(), frame.height(), frame.rgb().to_vec())
            .context("a frame has width × height × 3 bytes")?;
        let mut faces = Vec::new();
        for d in entry["detections"].as_array().into_iter().flatten() {
            let b: Vec<f32> =
                d["box"].as_array().into_iter().flatten().filter_map(|v| v.as_f64()).map(|v| v as f32).collect();
            let (w, h) = (b[2] - b[0], b[3] - b[1]);
            faces.push([b[0] - 0.5 * w, b[1] - 0.5 * h, b[2] + 0.5 * w, b[3] + 0.5 * h]);
        }
        if path.contains("no_faces") {
            out.push(frame.clone());
        }
        let (w, h) = (frame.width(), frame.height());
        let mut made = 0;
        for _ in 0..200 {
            if made >= 12 {
                break;
            }
            let side = (w.min(h) as f32 * (0.2 + 0.5 * rng.below(100) as f32 / 100.0)) as u32;
            let (x, y) = (rng.below((w - side) as usize + 1) as u32, rng.below((h - side) as usize + 1) as u32);
            let r = [x as f32, y as f32, (x + side) as f32, (y + side) as f32];
            if faces.iter().any(|b| b[0] < r[2] && r[0] < b[2] && b[1] < r[3] && r[1] < b[3]) {
                continue;
            }
            let out_side = 64 + rng.below(300) as u32;
            let cut = image::imageops::crop_imm(&img, x, y, side, side).to_image();
            let cut = image::imageops::resize(&cut, out_side, out_side, image::imageops::FilterType::Triangle);
            out.push(Frame::from_rgb(out_side, out_side, cut.into_raw())?);
            made += 1;
        }
    }
    Ok(out)
}

#[derive(Serialize)]
struct Line<'a> {
    image: &'a Path,
    width: u32,
    height: u32,
    faces: &'a [Face],
}

/// Each photo is decoded to its bounded working frame ([`Frame::decode_photo`]) and answered by
/// [`mien::pipeline::analyze_photo`], one after another: a photo that fails is reported and the
/// others go on.
pub fn run(images: &[PathBuf], min_face: f32, min_face_fraction: f32, upright: bool, json: bool) -> Result<ExitCode> {
    let det = detector(min_face)?;
    let turned_look = if upright { None } else { det.config().turned_look };
    let config = DetectorConfig { min_face_fraction, turned_look, ..det.config().clone() };
    config.validate()?;
    let mut failures = 0;
    for path in images {
        let outcome = std::fs::read(path)
            .map_err(|e| format!("cannot read the file: {e}"))
            .and_then(|bytes| Frame::decode_photo(&bytes, Some(config.photo_short_side())).map_err(|e| e.to_string()))
            .and_then(|photo| {
                let found = pollster::block_on(mien::pipeline::analyze_photo(&det, None, &photo, &config));
                found.map(|f| (photo, f.into_iter().map(|f| f.face).collect::<Vec<Face>>())).map_err(|e| e.to_string())
            });
        match outcome {
            Ok((photo, faces)) => {
                if json {
                    let line = Line { image: path, width: photo.width, height: photo.height, faces: &faces };
                    println!("{}", serde_json::to_string(&line)?);
                } else {
                    println!("{}: {}×{}, {} face(s)", path.display(), photo.width, photo.height, faces.len());
                    for f in &faces {
                        let [x1, y1, x2, y2] = f.bbox;
                        println!("  box [{x1:.1}, {y1:.1}, {x2:.1}, {y2:.1}]  score {:.4}", f.score);
                    }
                }
            }
            Err(e) => {
                failures += 1;
                if json {
                    println!("{}", serde_json::json!({ "image": path, "error": e }));
                } else {
                    eprintln!("{}: {e}", path.display());
                }
            }
        }
    }
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
