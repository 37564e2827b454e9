//! How long the live page's follow-up holds a face on a still frame: each face found by the
//! search, followed ten times in a row from the box the follow-up before gave (O-Net alone, as
//! the live page does between two searches), with the follow window at other sizes. A face lost
//! is a frame where the live page shows none and searches again; a box that drifts is a crop
//! the classifier did not learn from.
//!
//! ```sh
//! cargo run -p mien-trainer --example follow_chains -- ../shared/data/fer2013 1000 0.85 0.9 0.95 1.0
//! ```
//!
//! The faces are an even sample of FER2013's *training* images (the test split is never read),
//! each upscaled to 200 px on a grey 640×480 frame, and the faces of the fixture photos. Each
//! factor is the follow window's side as a fraction of the face's box
//! ([`mien::detect::FOLLOW_WINDOW`] ships).

use anyhow::{Context, Result};
use mien::detect::boxes::iou;
use mien::detect::{DetectorConfig, FOLLOW_WINDOW};
use mien::{FaceDetector, Frame, MtcnnWeights};

/// Follow-ups in a row from each search's box.
const CHAIN: usize = 10;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(data), Some(n)) = (args.get(1), args.get(2).and_then(|v| v.parse::<usize>().ok())) else {
        anyhow::bail!("usage: follow_chains DATA N FACTOR...");
    };
    let factors: Vec<f32> = args[3..].iter().map(|v| v.parse()).collect::<Result<_, _>>()?;
    let read = |f: &str| std::fs::read(format!("assets/mtcnn/{f}")).with_context(|| format!("assets/mtcnn/{f}"));
    let weights = MtcnnWeights {
        pnet: read("pnet.safetensors")?,
        rnet: read("rnet.safetensors")?,
        onet: read("onet.safetensors")?,
    };
    // The live page's settings: faces from 48 px.
    let config = DetectorConfig { min_face_size: 48.0, ..DetectorConfig::default() };
    let det = FaceDetector::new(&weights, config.clone(), &burn::prelude::Device::flex())?;

    let mut files = Vec::new();
    for class in std::fs::read_dir(format!("{data}/train")).context("DATA/train")? {
        for f in std::fs::read_dir(class?.path())? {
            files.push(f?.path());
        }
    }
    files.sort();
    let mut training = Vec::new();
    for f in files.iter().step_by((files.len() / n.max(1)).max(1)) {
        let face = image::open(f)?.resize_exact(200, 200, image::imageops::FilterType::Triangle).to_rgb8();
        let mut frame = image::RgbImage::from_pixel(640, 480, image::Rgb([128, 128, 128]));
        image::imageops::overlay(&mut frame, &face, 220, 140);
        let frame = Frame::from_rgb(640, 480, frame.into_raw())?;
        if let Some(first) = det.detect(&frame)?.first() {
            training.push((frame, first.bbox));
        }
    }
    let mut photos = Vec::new();
    for f in std::fs::read_dir("tests/fixtures/faces")? {
        let frame = Frame::decode(&std::fs::read(f?.path())?)?;
        for face in det.detect(&frame)? {
            photos.push((frame.clone(), face.bbox));
        }
    }

    for (name, faces) in [("training images", &training), ("fixture photos", &photos)] {
        for &factor in &factors {
            let (mut first, mut lost, mut iou_sum, mut held) = (0, 0, 0.0, 0);
            for (frame, found) in faces.iter() {
                let mut b = *found;
                let mut lost_at = None;
                for step in 0..CHAIN {
                    // follow_with makes the window FOLLOW_WINDOW of the prior: ask for `factor`.
                    let prior = scaled(b, factor / FOLLOW_WINDOW);
                    match pollster::block_on(det.follow_with(frame, &[prior], &config))?.first() {
                        Some(f) => b = f.bbox,
                        None => {
                            lost_at = Some(step);
                            break;
                        }
                    }
                }
                match lost_at {
                    Some(step) => {
                        lost += 1;
                        first += usize::from(step == 0);
                    }
                    None => {
                        held += 1;
                        iou_sum += iou(b, *found);
                    }
                }
            }
            println!(
                "{name} ({} faces), window {factor}: lost at the first follow-up {first}, within {CHAIN} {lost}; \
                 IoU of the box after {CHAIN} with the search's {:.3} (mean)",
                faces.len(),
                iou_sum / held.max(1) as f32
            );
        }
    }
    Ok(())
}

/// `b` scaled by `k` about its centre.
fn scaled(b: [f32; 4], k: f32) -> [f32; 4] {
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    let (hw, hh) = ((b[2] - b[0]) * k / 2.0, (b[3] - b[1]) * k / 2.0);
    [cx - hw, cy - hh, cx + hw, cy + hh]
}
