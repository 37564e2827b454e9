//! How often the cascade finds the face, under other settings, on FER2013 *training* images (the
//! test splits are never read), and how many faces it raises where there are none.
//!
//! ```sh
//! cargo run -p mien-trainer --example detection_variants -- ../shared/data/fer2013 200 \
//!     edges=clipped,look=off edges=grey,look=off edges=grey,look=0.95 edges=grey,look=off,th=0.2/0.2/0.7
//! ```
//!
//! Each variant is `key=value` pairs: `edges` (`clipped`: facenet-pytorch's crops and pyramid;
//! `grey`, `edge`, `black`: padded crops and pyramid with that fill), `look` (the second look's
//! O-Net score, or `off`) and `th` (the three stage thresholds). The images are a seeded sample,
//! each pasted into the crop check's 400×400 frame and given as it is (48×48). The faceless
//! frames are the faceless fixtures and square cuts of the fixture photos away from every
//! reference face.

use anyhow::{bail, Context, Result};
use burn::prelude::*;
use mien::detect::{DetectorConfig, EdgeSearch, Padding};
use mien::{FaceDetector, Frame};
use mien_trainer::augment::SplitMix64;
use mien_trainer::cropcheck::synthetic_frame;
use mien_trainer::evaluate::{load_classifier, shipped_model_dir};
use mien_trainer::examples::{examples_of, open_dataset};

/// Square cuts of the fixture photos that touch no reference face (grown by half its size),
/// resized to 64–363 px, and the faceless fixtures as they are.
fn faceless(rng: &mut SplitMix64) -> Result<Vec<Frame>> {
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read("tests/fixtures/reference_mtcnn_detections.json")?)?;
    let mut out = Vec::new();
    let images = reference["images"].as_object().context("reference detections: no images")?;
    for (path, entry) in images {
        let frame = Frame::decode(&std::fs::read(format!("tests/{path}"))?)?;
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

fn variant(spec: &str) -> Result<DetectorConfig> {
    let mut config = DetectorConfig::default();
    for pair in spec.split(',') {
        let (key, value) = pair.split_once('=').with_context(|| format!("{pair}: not key=value"))?;
        match key {
            "edges" => {
                config.edges = match value {
                    "clipped" => EdgeSearch::CLIPPED,
                    "grey" => EdgeSearch { padding: Some(Padding::Fill(128)), padded_pyramid: true },
                    "edge" => EdgeSearch { padding: Some(Padding::Edge), padded_pyramid: true },
                    "black" => EdgeSearch { padding: Some(Padding::Fill(0)), padded_pyramid: true },
                    _ => bail!("edges={value}: clipped, grey, edge or black"),
                }
            }
            "look" => config.second_look = if value == "off" { None } else { Some(value.parse()?) },
            "th" => {
                let t: Vec<f32> = value.split('/').map(str::parse).collect::<Result<_, _>>()?;
                config.thresholds = t.try_into().map_err(|_| anyhow::anyhow!("th={value}: three thresholds"))?;
            }
            _ => bail!("{key}: edges, look or th"),
        }
    }
    Ok(config)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [data, n, specs @ ..] = args.as_slice() else {
        bail!("usage: detection_variants DATASET IMAGES VARIANT...");
    };
    let n: usize = n.parse().context("IMAGES: a number")?;
    let classifier = load_classifier(&shipped_model_dir())?;
    let mut dataset = open_dataset(std::path::Path::new(data), None, None)?;
    dataset.samples.retain(|s| !matches!(s.usage.as_deref(), Some("PublicTest") | Some("PrivateTest")));
    let (mut examples, _, _) = examples_of(&dataset, &classifier.manifest().crop)?;
    SplitMix64::new(7).shuffle(&mut examples);
    examples.truncate(n);
    let weights = mien_trainer::detect::shipped_weights();
    let negatives = faceless(&mut SplitMix64::new(3))?;
    println!("{} training images, {} faceless frames", examples.len(), negatives.len());
    for spec in specs {
        let config = variant(spec)?;
        let framed =
            FaceDetector::new(&weights, DetectorConfig { min_face_size: 40.0, ..config.clone() }, &Device::flex())?;
        let bare = FaceDetector::new(&weights, config, &Device::flex())?;
        let mut rng = SplitMix64::new(42);
        let (mut in_frame, mut as_is) = (0, 0);
        let started = std::time::Instant::now();
        for e in &examples {
            in_frame += usize::from(!framed.detect(&synthetic_frame(&e.pixels, 48, &mut rng)?)?.is_empty());
            as_is += usize::from(!bare.detect(&Frame::from_gray(48, 48, &e.pixels)?)?.is_empty());
        }
        let ms = 1000.0 * started.elapsed().as_secs_f64() / examples.len().max(1) as f64;
        let mut false_faces = Vec::new();
        for f in &negatives {
            false_faces.extend(bare.detect(f)?.iter().map(|f| format!("{:.2}", f.score)));
        }
        let pct = |k: usize| 100.0 * k as f64 / examples.len().max(1) as f64;
        println!(
            "{spec:40} in a frame {:.1} %  as it is {:.1} %  faces on faceless frames {} [{}]  {ms:.0} ms per image pair",
            pct(in_frame),
            pct(as_is),
            false_faces.len(),
            false_faces.join(" ")
        );
    }
    Ok(())
}
