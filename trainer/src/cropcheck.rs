//! `mien-trainer crop-check`: does the browser's pipeline (MTCNN + aligned crop) hand the model
//! what the dataset's crops taught it to expect?
//!
//! Dataset crops were cut by other detectors. Each crop is upscaled and pasted into a larger
//! canvas (a "full frame" with one face), the pipeline finds and crops the face again, and the
//! model classifies that crop. Compared with the dataset crop fed directly, on the same images:
//! the detection rate, the accuracy both ways, and how alike the two crops are (normalised
//! cross-correlation). With `--tune`, the crop margin is chosen on training images only, by that
//! likeness, and written into the model's manifest.
//!
//! The same images are also given as they are (`bare`: the dataset's own image, no frame around
//! it), as a photo that is only a face reaches the app.
//!
//! Photos (`--photos`, the fixture photos) have no dataset crop, so there the reference is the
//! pipeline's own crop of each face in the photo as it is: the photo is scaled and pasted into a
//! larger frame, and the face is found, cropped and classified again. A pipeline that hands the
//! model the same crop however a face is framed gives the same answer.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image::{imageops, Rgb, RgbImage};
use mien::align::{crop_face, ncc, CropConfig, FaceCrop};
use mien::detect::boxes::iou;
use mien::{ExpressionClassifier, Face, Frame};
use serde::Serialize;

use crate::augment::SplitMix64;
use crate::detect::detector;
use crate::evaluate::{holdout_examples, load_classifier, model_label, TestSplit};
use crate::examples::{examples_of, open_dataset};
use crate::train::Example;
use mien::classify::argmax;

/// Upscale factor of a dataset crop in its synthetic frame.
const UPSCALE: u32 = 4;
/// Side of the synthetic frame.
const CANVAS: u32 = 400;

/// A dataset crop, upscaled (bilinear) and pasted at a seeded random place of a canvas filled
/// with the crop's mean gray.
pub fn synthetic_frame(crop: &[u8], side: u32, rng: &mut SplitMix64) -> Result<Frame> {
    let big = side * UPSCALE;
    let mean = (crop.iter().map(|&p| p as u32).sum::<u32>() / crop.len().max(1) as u32) as u8;
    let mut canvas = vec![mean; (CANVAS * CANVAS) as usize];
    let room = CANVAS.saturating_sub(big) as usize;
    let (ox, oy) = (rng.below(room + 1), rng.below(room + 1));
    let s = side as usize;
    for y in 0..big as usize {
        let fy = ((y as f32 + 0.5) / UPSCALE as f32 - 0.5).clamp(0.0, (s - 1) as f32);
        let (y0, wy) = (fy.floor() as usize, fy - fy.floor());
        let y1 = (y0 + 1).min(s - 1);
        for x in 0..big as usize {
            let fx = ((x as f32 + 0.5) / UPSCALE as f32 - 0.5).clamp(0.0, (s - 1) as f32);
            let (x0, wx) = (fx.floor() as usize, fx - fx.floor());
            let x1 = (x0 + 1).min(s - 1);
            let p = |xx: usize, yy: usize| crop[yy * s + xx] as f32;
            let v =
                (p(x0, y0) * (1.0 - wx) + p(x1, y0) * wx) * (1.0 - wy) + (p(x0, y1) * (1.0 - wx) + p(x1, y1) * wx) * wy;
            canvas[(oy + y) * CANVAS as usize + ox + x] = v.round() as u8;
        }
    }
    Ok(Frame::from_gray(CANVAS, CANVAS, &canvas)?)
}

/// What the pipeline did on a set of images, with one crop convention.
#[derive(Debug, Clone, Serialize)]
pub struct CropCheck {
    pub margin: f32,
    pub shift: f32,
    /// Whether the crop was turned to level the eyes.
    pub align: bool,
    pub images: usize,
    /// Images where the detector found a face.
    pub detected: usize,
    /// Accuracy of the model on the dataset crops fed directly.
    pub direct_accuracy: Option<f64>,
    /// Accuracy through detection + aligned crop (an image without a detected face counts as wrong).
    pub pipeline_accuracy: Option<f64>,
    /// Images where both ways predict the same emotion, as a fraction of the detected ones.
    pub agreement: Option<f64>,
    /// Mean NCC between the pipeline's crop and the dataset crop, over the detected images.
    pub mean_ncc: f64,
}

/// Each example pasted into a synthetic frame, and the best face the detector finds there.
pub fn detect_all(examples: &[Example], side: u32, seed: u64) -> Result<Vec<(Frame, Option<Face>)>> {
    let mut rng = SplitMix64::new(seed);
    detect_each(examples, 40.0, "synthetic frames", |e| synthetic_frame(&e.pixels, side, &mut rng))
}

/// Each example as it is, with no frame around it (a photo that is only a face: a profile
/// picture, an ID-photo crop), and the best face the detector finds there with the app's default
/// smallest face.
pub fn detect_bare(examples: &[Example], side: u32) -> Result<Vec<(Frame, Option<Face>)>> {
    let min_face = mien::DetectorConfig::default().min_face_size;
    detect_each(examples, min_face, "images as they are", |e| Ok(Frame::from_gray(side, side, &e.pixels)?))
}

fn detect_each(
    examples: &[Example],
    min_face: f32,
    what: &str,
    mut frame_of: impl FnMut(&Example) -> Result<Frame>,
) -> Result<Vec<(Frame, Option<Face>)>> {
    let det = detector(min_face)?;
    let mut found = Vec::with_capacity(examples.len());
    for (i, e) in examples.iter().enumerate() {
        let frame = frame_of(e)?;
        let face = det.detect(&frame)?.into_iter().next();
        found.push((frame, face));
        if (i + 1) % 100 == 0 {
            eprint!("\rdetected faces in {} of {} {what} ", i + 1, examples.len());
        }
    }
    eprintln!();
    Ok(found)
}

/// Crops every found face with `config` and scores the crops: likeness to the dataset crop
/// always, accuracy and agreement when `classifier` is given.
pub fn score(
    classifier: Option<&ExpressionClassifier>,
    examples: &[Example],
    found: &[(Frame, Option<Face>)],
    config: &CropConfig,
) -> Result<CropCheck> {
    let mut crops = Vec::new();
    let mut which = Vec::new();
    for (i, (frame, face)) in found.iter().enumerate() {
        if let Some(face) = face {
            crops.push(crop_face(frame, face, config));
            which.push(i);
        }
    }
    let n = examples.len().max(1) as f64;
    let d = which.len().max(1) as f64;
    let ncc_sum: f64 = crops.iter().zip(&which).map(|(c, &i)| ncc(&c.pixels, &examples[i].pixels)).sum();
    let mut row = CropCheck {
        margin: config.margin,
        shift: config.shift,
        align: config.align,
        images: examples.len(),
        detected: which.len(),
        direct_accuracy: None,
        pipeline_accuracy: None,
        agreement: None,
        mean_ncc: ncc_sum / d,
    };
    if let Some(classifier) = classifier {
        let side = classifier.manifest().input_size;
        let direct_crops: Vec<FaceCrop> =
            examples.iter().map(|e| FaceCrop { size: side, pixels: e.pixels.clone() }).collect();
        let direct = predictions(classifier, &direct_crops)?;
        let preds = predictions(classifier, &crops)?;
        row.direct_accuracy = Some(direct.iter().zip(examples).filter(|(p, e)| **p == e.label).count() as f64 / n);
        row.pipeline_accuracy =
            Some(preds.iter().zip(&which).filter(|(p, &i)| **p == examples[i].label).count() as f64 / n);
        row.agreement = Some(preds.iter().zip(&which).filter(|(p, &i)| **p == direct[i]).count() as f64 / d);
    }
    Ok(row)
}

fn predictions(classifier: &ExpressionClassifier, crops: &[FaceCrop]) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(crops.len());
    for chunk in crops.chunks(256) {
        let refs: Vec<&FaceCrop> = chunk.iter().collect();
        out.extend(classifier.classify(&refs)?.iter().map(|p| argmax(p)));
    }
    Ok(out)
}

/// Scales at which each photo is pasted into a larger frame (half again as wide and high).
const PHOTO_SCALES: [f32; 3] = [0.75, 1.0, 1.25];

/// What the pipeline did with the faces of photos moved into larger frames.
#[derive(Debug, Clone, Serialize)]
pub struct PhotoCheck {
    /// Photos with at least one face (score ≥ 0.9) as they are.
    pub photos: usize,
    pub faces: usize,
    pub scales: Vec<f32>,
    /// Face × scale pairs tried.
    pub framings: usize,
    /// Pairs where the face was found again where it was moved to (IoU ≥ 0.5).
    pub found_again: usize,
    /// Found pairs with the same top emotion as the face cropped from the photo as it is.
    pub agreement: f64,
    /// Mean NCC between the two crops, over the found pairs.
    pub mean_ncc: f64,
    /// Mean total-variation distance between the two probability vectors (0 same, 1 disjoint).
    pub mean_probability_change: f64,
}

/// Each photo of `dir` as it is and moved into larger frames at [`PHOTO_SCALES`] (seeded
/// places): is each face found again, cropped alike and given the same emotion?
pub fn check_photos(classifier: &ExpressionClassifier, dir: &Path, seed: u64) -> Result<PhotoCheck> {
    let det = detector(20.0)?;
    let crop = classifier.manifest().crop;
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the photo folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    let mut rng = SplitMix64::new(seed);
    let mut check = PhotoCheck {
        photos: 0,
        faces: 0,
        scales: PHOTO_SCALES.to_vec(),
        framings: 0,
        found_again: 0,
        agreement: 0.0,
        mean_ncc: 0.0,
        mean_probability_change: 0.0,
    };
    for path in &paths {
        let frame = match std::fs::read(path).map_err(anyhow::Error::from).and_then(|b| Ok(Frame::decode(&b)?)) {
            Ok(frame) => frame,
            Err(e) => {
                eprintln!("{}: skipped ({e})", path.display());
                continue;
            }
        };
        let faces: Vec<Face> = det.detect(&frame)?.into_iter().filter(|f| f.score >= 0.9).collect();
        if faces.is_empty() {
            continue;
        }
        check.photos += 1;
        check.faces += faces.len();
        let reference: Vec<FaceCrop> = faces.iter().map(|f| crop_face(&frame, f, &crop)).collect();
        let reference_p = classifier.classify(&reference.iter().collect::<Vec<_>>())?;
        let rgb = RgbImage::from_raw(frame.width(), frame.height(), frame.rgb().to_vec())
            .context("a decoded frame has width × height × 3 bytes")?;
        let mean = (frame.rgb().iter().map(|&v| v as u64).sum::<u64>() / frame.rgb().len().max(1) as u64) as u8;
        for &scale in &PHOTO_SCALES {
            let w = ((frame.width() as f32 * scale).round() as u32).max(1);
            let h = ((frame.height() as f32 * scale).round() as u32).max(1);
            let scaled = imageops::resize(&rgb, w, h, imageops::FilterType::Triangle);
            let (cw, ch) = (w + w / 2, h + h / 2);
            let (ox, oy) = (rng.below((cw - w) as usize + 1) as u32, rng.below((ch - h) as usize + 1) as u32);
            let mut canvas = RgbImage::from_pixel(cw, ch, Rgb([mean; 3]));
            imageops::replace(&mut canvas, &scaled, ox as i64, oy as i64);
            let moved = Frame::from_rgb(cw, ch, canvas.into_raw())?;
            let found = det.detect(&moved)?;
            let (sx, sy) = (w as f32 / frame.width() as f32, h as f32 / frame.height() as f32);
            for (k, face) in faces.iter().enumerate() {
                check.framings += 1;
                let b = face.bbox;
                let expected =
                    [b[0] * sx + ox as f32, b[1] * sy + oy as f32, b[2] * sx + ox as f32, b[3] * sy + oy as f32];
                let Some(again) = found.iter().max_by(|a, b| iou(a.bbox, expected).total_cmp(&iou(b.bbox, expected)))
                else {
                    continue;
                };
                if iou(again.bbox, expected) < 0.5 {
                    continue;
                }
                let again_crop = crop_face(&moved, again, &crop);
                let p = classifier.classify(&[&again_crop])?.remove(0);
                check.found_again += 1;
                check.agreement += f64::from(u8::from(argmax(&p) == argmax(&reference_p[k])));
                check.mean_ncc += ncc(&again_crop.pixels, &reference[k].pixels);
                check.mean_probability_change +=
                    0.5 * p.iter().zip(&reference_p[k]).map(|(a, b)| f64::from((a - b).abs())).sum::<f64>();
            }
        }
        eprintln!("{}: {} face(s), {} framings", path.display(), faces.len(), PHOTO_SCALES.len());
    }
    let found = check.found_again.max(1) as f64;
    check.agreement /= found;
    check.mean_ncc /= found;
    check.mean_probability_change /= found;
    Ok(check)
}

/// An evenly spread, seeded sample of at most `limit` examples.
fn sample(mut examples: Vec<Example>, limit: usize, seed: u64) -> Vec<Example> {
    if examples.len() > limit {
        SplitMix64::new(seed).shuffle(&mut examples);
        examples.truncate(limit);
    }
    examples
}

fn print(rows: &[CropCheck]) {
    let pct = |v: Option<f64>| v.map(|v| format!("{:.2}%", 100.0 * v)).unwrap_or_else(|| "-".into());
    println!(
        "{:>7} {:>6} {:>6} {:>7} {:>9} {:>8} {:>9} {:>10} {:>9}",
        "margin", "shift", "align", "images", "detected", "direct", "pipeline", "agreement", "crop NCC"
    );
    for r in rows {
        println!(
            "{:>7.3} {:>6.3} {:>6} {:>7} {:>8.1}% {:>8} {:>9} {:>10} {:>9.3}",
            r.margin,
            r.shift,
            if r.align { "yes" } else { "no" },
            r.images,
            100.0 * r.detected as f64 / r.images.max(1) as f64,
            pct(r.direct_accuracy),
            pct(r.pipeline_accuracy),
            pct(r.agreement),
            r.mean_ncc
        );
    }
}

/// `crop-check`: with `tune`, picks the crop margin and shift on the dataset's training images (by
/// crop likeness) and writes them to the model's manifest; then measures the model's crop
/// convention on the hold-out images and writes a report.
pub fn run(
    model: &Path,
    data: &Path,
    limit: usize,
    tune: bool,
    photos: Option<&Path>,
    seed: u64,
    report: &Path,
) -> Result<()> {
    let mut classifier = load_classifier(model)?;
    let side = classifier.manifest().input_size;
    if tune {
        let mut dataset = open_dataset(data, None, None)?;
        dataset.samples.retain(|s| {
            !matches!(s.usage.as_deref(), Some("PublicTest") | Some("PrivateTest"))
                && classifier.manifest().labels.contains(&s.label)
        });
        eprintln!(
            "tuning the crop on {} training images (of {})",
            limit.min(dataset.samples.len()),
            dataset.samples.len()
        );
        let (examples, _, labels) = examples_of(&dataset, &classifier.manifest().crop)?;
        let manifest_labels = classifier.manifest().labels.clone();
        let examples: Vec<Example> = examples
            .into_iter()
            .map(|e| Example { label: manifest_labels.iter().position(|l| *l == labels[e.label]).unwrap_or(0), ..e })
            .collect();
        let examples = sample(examples, limit, seed);
        let found = detect_all(&examples, side, seed)?;
        let base = classifier.manifest().crop;
        let mut grid = Vec::new();
        for align in [true, false] {
            for m in 0..=10 {
                for sh in 0..=8 {
                    let (margin, shift) = (-0.3 + 0.04 * m as f32, -0.16 + 0.04 * sh as f32);
                    let config = CropConfig { margin, shift, align, ..base };
                    grid.push(score(None, &examples, &found, &config)?);
                }
            }
        }
        grid.sort_by(|a, b| b.mean_ncc.total_cmp(&a.mean_ncc));
        println!("training images, the 5 most alike crop conventions of {}:", grid.len());
        let top: Vec<CropCheck> = grid.iter().take(5).cloned().collect();
        print(&top);
        let best = &grid[0];
        let chosen = CropConfig { margin: best.margin, shift: best.shift, align: best.align, ..base };
        let default = CropConfig { size: side, ..CropConfig::default() };
        let rows = vec![
            score(Some(&classifier), &examples, &found, &default)?,
            score(Some(&classifier), &examples, &found, &chosen)?,
        ];
        println!("training images, the default crop and the chosen one:");
        print(&rows);
        let path = model.join("manifest.json");
        let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        manifest["crop"] = serde_json::to_value(chosen)?;
        manifest["info"]["crop_tuning"] = serde_json::json!({
            "images": examples.len(), "seed": seed, "criterion": "mean NCC of the pipeline crop with the dataset crop",
            "top": top, "default_vs_chosen": rows,
        });
        crate::fsutil::write_atomic(&path, &crate::json::pretty(&manifest)?)?;
        eprintln!(
            "margin {:.3}, shift {:.3}, align {} written to {}",
            chosen.margin,
            chosen.shift,
            chosen.align,
            path.display()
        );
        classifier = load_classifier(model)?;
    }
    let mut dataset = open_dataset(data, None, None)?;
    let split = TestSplit::of(&dataset, None)?;
    let examples = sample(holdout_examples(&mut dataset, classifier.manifest(), split)?, limit, seed);
    let found = detect_all(&examples, side, seed)?;
    let row = score(Some(&classifier), &examples, &found, &classifier.manifest().crop)?;
    println!("hold-out images pasted into {CANVAS}×{CANVAS} frames, the model's crop convention:");
    print(std::slice::from_ref(&row));
    let bare = score(Some(&classifier), &examples, &detect_bare(&examples, side)?, &classifier.manifest().crop)?;
    println!("the same images as they are ({side}×{side}, no frame around them):");
    print(std::slice::from_ref(&bare));
    let photo_check = photos.map(|dir| check_photos(&classifier, dir, seed)).transpose()?;
    if let Some(p) = &photo_check {
        println!(
            "photos moved into larger frames: {} faces in {} photos, {} framings, found again {}, same emotion {:.1}%, crop NCC {:.3}, probability change {:.3}",
            p.faces,
            p.photos,
            p.framings,
            p.found_again,
            100.0 * p.agreement,
            p.mean_ncc,
            p.mean_probability_change
        );
    }
    let mut value = serde_json::json!({
        "schema_version": 1,
        "kind": "crop_check",
        "model": model_label(model),
        "dataset": data.display().to_string(),
        "layout": dataset.layout.to_string(),
        "seed": seed,
        "canvas": CANVAS,
        "upscale": UPSCALE,
        "result": row,
        "bare": bare,
    });
    if let (Some(p), Some(dir)) = (&photo_check, photos) {
        value["photos"] = serde_json::to_value(p)?;
        value["photo_folder"] = dir.display().to_string().into();
    }
    if let Some(dir) = report.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    crate::fsutil::write_atomic(report, &crate::json::pretty(&value)?)?;
    eprintln!("report written to {}", report.display());
    Ok(())
}
