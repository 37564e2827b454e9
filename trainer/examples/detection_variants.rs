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
use mien_trainer::detect::faceless_frames;
use mien_trainer::evaluate::{load_classifier, shipped_model_dir};
use mien_trainer::examples::training_sample;

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
    let examples = training_sample(std::path::Path::new(data), &classifier.manifest().crop, n, 7)?;
    let weights = mien_trainer::detect::shipped_weights();
    let negatives = faceless_frames(&mut SplitMix64::new(3))?;
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
