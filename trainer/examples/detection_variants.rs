//! How often the cascade finds the face, under other settings, on FER2013 *training* images (the
//! test splits are never read), and how many faces it raises where there are none.
//!
//! ```sh
//! cargo run -p mien-trainer --example detection_variants -- ../shared/data/fer2013 1000 \
//!     turn=off turn=0.95 turn=0.97 turn=0.99
//! ```
//!
//! Each variant is `key=value` pairs over the default settings: `edges` (`clipped`:
//! facenet-pytorch's crops and pyramid; `grey`, `edge`, `black`: padded crops and pyramid with
//! that fill), `look` (the second look's O-Net score, or `off`), `turn` (the turned look's O-Net
//! score, or `off`) and `th` (the three stage thresholds). The images are a seeded sample, each
//! pasted into the crop check's 400×400 frame and given as it is (48×48). The faceless frames are
//! the faceless fixtures and square cuts of the fixture photos away from every reference face.
//! With `MISSED_MONTAGE=DIR`, each variant writes the images it missed in a frame, and the crops
//! of the faces it raised on faceless frames, as PNG sheets into `DIR` for a person to look at.

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
            "turn" => config.turned_look = if value == "off" { None } else { Some(value.parse()?) },
            "th" => {
                let t: Vec<f32> = value.split('/').map(str::parse).collect::<Result<_, _>>()?;
                config.thresholds = t.try_into().map_err(|_| anyhow::anyhow!("th={value}: three thresholds"))?;
            }
            _ => bail!("{key}: edges, look, turn or th"),
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
        let mut missed: Vec<&[u8]> = Vec::new();
        for e in &examples {
            let found = !framed.detect(&synthetic_frame(&e.pixels, 48, &mut rng)?)?.is_empty();
            in_frame += usize::from(found);
            if !found {
                missed.push(&e.pixels);
            }
            as_is += usize::from(!bare.detect(&Frame::from_gray(48, 48, &e.pixels)?)?.is_empty());
        }
        if let Some(dir) = std::env::var_os("MISSED_MONTAGE") {
            // The images missed in a frame, 16 a row, for a person to look at.
            let cols = 16u32;
            let rows = (missed.len() as u32).div_ceil(cols).max(1);
            let mut sheet = image::GrayImage::new(cols * 50, rows * 50);
            for (i, pixels) in missed.iter().enumerate() {
                let (c, r) = (i as u32 % cols, i as u32 / cols);
                for (k, &p) in pixels.iter().enumerate() {
                    sheet.put_pixel(c * 50 + k as u32 % 48, r * 50 + k as u32 / 48, image::Luma([p]));
                }
            }
            let path = std::path::Path::new(&dir).join(format!("missed-{}.png", spec.replace([',', '=', '/'], "_")));
            sheet.save(&path)?;
        }
        let ms = 1000.0 * started.elapsed().as_secs_f64() / examples.len().max(1) as f64;
        let mut false_faces = Vec::new();
        let mut false_crops = Vec::new();
        let started = std::time::Instant::now();
        for frame in &negatives {
            for f in bare.detect(frame)? {
                false_faces.push(format!("{:.2}", f.score));
                let crop = mien::align::crop_face(frame, &f, &classifier.manifest().crop);
                false_crops.push(crop.pixels);
            }
        }
        let faceless_ms = 1000.0 * started.elapsed().as_secs_f64() / negatives.len().max(1) as f64;
        if let Some(dir) = std::env::var_os("MISSED_MONTAGE") {
            let size = classifier.manifest().input_size;
            let mut sheet = image::GrayImage::new(false_crops.len().max(1) as u32 * (size + 2), size);
            for (i, pixels) in false_crops.iter().enumerate() {
                for (k, &p) in pixels.iter().enumerate() {
                    sheet.put_pixel(i as u32 * (size + 2) + k as u32 % size, k as u32 / size, image::Luma([p]));
                }
            }
            let path = std::path::Path::new(&dir).join(format!("false-{}.png", spec.replace([',', '=', '/'], "_")));
            sheet.save(&path)?;
        }
        let pct = |k: usize| 100.0 * k as f64 / examples.len().max(1) as f64;
        println!(
            "{spec:40} in a frame {:.1} %  as it is {:.1} %  faces on faceless frames {} [{}]  {ms:.0} ms per image pair, {faceless_ms:.0} per faceless frame",
            pct(in_frame),
            pct(as_is),
            false_faces.len(),
            false_faces.join(" ")
        );
    }
    Ok(())
}
