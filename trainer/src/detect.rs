//! `mien-trainer detect`: faces in image files, as a table or as JSON lines.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use mien::burn::prelude::Device;
use mien::{DetectorConfig, Face, FaceDetector, Frame, MtcnnWeights};
use serde::Serialize;

/// The shipped MTCNN weights, built into the binary so the CLI works from any directory.
pub fn shipped_weights() -> MtcnnWeights {
    MtcnnWeights {
        pnet: include_bytes!("../../assets/mtcnn/pnet.safetensors").to_vec(),
        rnet: include_bytes!("../../assets/mtcnn/rnet.safetensors").to_vec(),
        onet: include_bytes!("../../assets/mtcnn/onet.safetensors").to_vec(),
    }
}

pub fn detector(min_face: f32) -> Result<FaceDetector> {
    let config = DetectorConfig { min_face_size: min_face, ..DetectorConfig::default() };
    FaceDetector::new(&shipped_weights(), config, &Device::flex()).context("loading the MTCNN weights")
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
