//! What stops the cascade on the faces it misses, and what a search of large windows would
//! rescue. Each FER2013 *training* image (the test splits are never read) is pasted into the crop
//! check's 400×400 frame, where its place is known. For the images the cascade misses:
//!
//! - O-Net's best score on square windows about the pasted image (its side times each of
//!   `FACTORS`): a face O-Net is sure of there was missed by P-Net and R-Net; one it scores low is
//!   turned away by O-Net itself, and no better proposal finds it;
//! - the *close-up look*: O-Net on a grid of square windows of `FRACS` of the frame's shorter side
//!   (a quarter of a side apart), then once more on the boxes it regressed above 0.5, kept at each
//!   of `SCORES` with plausible landmarks; and the faces it raises on the faceless frames.
//!
//! ```sh
//! cargo run -p mien-trainer --example missed_faces -- ../shared/data/fer2013 2000
//! ```
//!
//! `FACTORS`, `FRACS` and `SCORES` are environment variables of comma-separated numbers
//! (defaults below). With `ONET=FILE` (a fine-tuned O-Net, `mien-trainer tune-onet`), the
//! close-up look asks that network instead, and the cascade with it as its last stage is
//! measured too, on the same frames, with `REPLACED=1`. `FLOORS` (comma-separated) are the pretrained
//! O-Net scores a close-look face must also reach, on the windows `FLOOR_FACTORS` (sets of sides
//! of the face's box, `;`-separated) give.

use anyhow::{bail, Context, Result};
use burn::prelude::*;
use mien::detect::turn::plausible_landmarks;
use mien::detect::{DetectorConfig, Face, FOLLOW_WINDOW};
use mien::{FaceDetector, Frame};
use mien_trainer::augment::SplitMix64;
use mien_trainer::cropcheck::synthetic_frame;
use mien_trainer::detect::faceless_frames;
use mien_trainer::evaluate::{load_classifier, shipped_model_dir};
use mien_trainer::examples::training_sample;

/// The side of a 48×48 image pasted into the crop check's frame (4× upscaled), and the frame's.
const PASTED: f32 = 192.0;
const CANVAS: usize = 400;

fn numbers(var: &str, default: &str) -> Result<Vec<f32>> {
    let text = std::env::var(var).unwrap_or_else(|_| default.to_string());
    text.split(',').map(|v| v.trim().parse::<f32>().with_context(|| format!("{var}: {v:?} is not a number"))).collect()
}

/// `b` scaled by `k` about its centre.
fn scaled(b: [f32; 4], k: f32) -> [f32; 4] {
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    let (hw, hh) = ((b[2] - b[0]) * k / 2.0, (b[3] - b[1]) * k / 2.0);
    [cx - hw, cy - hh, cx + hw, cy + hh]
}

/// Square windows of `fracs` of the shorter side, a quarter of a side apart, over a `w × h` frame.
fn grid(w: f32, h: f32, fracs: &[f32]) -> Vec<[f32; 4]> {
    let mut out = Vec::new();
    for &f in fracs {
        let side = f * w.min(h);
        let steps = |len: f32| ((len - side) / (side / 4.0)).ceil().max(0.0) as usize + 1;
        let (nx, ny) = (steps(w), steps(h));
        let at = |i: usize, n: usize, len: f32| {
            if n == 1 {
                (len - side) / 2.0
            } else {
                i as f32 * (len - side) / (n - 1) as f32
            }
        };
        for iy in 0..ny {
            for ix in 0..nx {
                let (x, y) = (at(ix, nx, w), at(iy, ny, h));
                out.push([x, y, x + side, y + side]);
            }
        }
    }
    out
}

/// O-Net's faces in windows `boxes` of `frame` (`follow_with` shrinks each by [`FOLLOW_WINDOW`],
/// so they are grown by as much first), kept above `score`.
fn onet_on(det: &FaceDetector, frame: &Frame, boxes: &[[f32; 4]], score: f32) -> Result<Vec<Face>> {
    let windows: Vec<[f32; 4]> = boxes.iter().map(|&b| scaled(b, 1.0 / FOLLOW_WINDOW)).collect();
    let cfg = DetectorConfig { thresholds: [0.6, 0.7, score], ..det.config().clone() };
    Ok(pollster::block_on(det.follow_with(frame, &windows, &cfg))?)
}

/// The close-up look at `score`.
fn close_up(det: &FaceDetector, frame: &Frame, fracs: &[f32], score: f32) -> Result<Vec<Face>> {
    let first = onet_on(det, frame, &grid(frame.width() as f32, frame.height() as f32, fracs), 0.5)?;
    let boxes: Vec<[f32; 4]> = first.iter().map(|f| f.bbox).collect();
    Ok(onet_on(det, frame, &boxes, score)?.into_iter().filter(plausible_landmarks).collect())
}

fn histogram(scores: &[f32]) -> String {
    let edges = [0.1f32, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99, 1.01];
    let mut lo = 0.0;
    let mut parts = Vec::new();
    for hi in edges {
        parts.push(format!("[{lo:.2}, {:.2}) {}", hi.min(1.0), scores.iter().filter(|&&s| s >= lo && s < hi).count()));
        lo = hi;
    }
    parts.join("  ")
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [data, n] = args.as_slice() else {
        bail!("usage: missed_faces DATASET IMAGES");
    };
    let n: usize = n.parse().context("IMAGES: a number")?;
    let factors = numbers("FACTORS", "1.6,1.4,1.2,1.0,0.8")?;
    let fracs = numbers("FRACS", "1.0,0.75,0.55,0.4")?;
    let scores = numbers("SCORES", "0.9,0.95,0.97")?;
    let classifier = load_classifier(&shipped_model_dir())?;
    let examples = training_sample(std::path::Path::new(data), &classifier.manifest().crop, n, 7)?;
    let weights = mien_trainer::detect::shipped_weights();
    // The crop check's detector (faces from 40 px) and the photos' (the default).
    let framed = FaceDetector::new(
        &weights,
        DetectorConfig { min_face_size: 40.0, ..DetectorConfig::default() },
        &Device::flex(),
    )?;
    let bare = FaceDetector::new(&weights, DetectorConfig::default(), &Device::flex())?;
    let tuned = match std::env::var_os("ONET") {
        Some(path) => {
            let onet = std::fs::read(&path).with_context(|| format!("reading {}", path.to_string_lossy()))?;
            let weights = mien::MtcnnWeights { onet, ..weights.clone() };
            let with = |config: &DetectorConfig| FaceDetector::new(&weights, config.clone(), &Device::flex());
            Some((with(framed.config())?, with(bare.config())?))
        }
        None => None,
    };
    let (look_framed, look_bare) = match &tuned {
        Some((f, b)) => (f, b),
        None => (&framed, &bare),
    };

    let mut rng = SplitMix64::new(42);
    let (mut missed, mut missed_best, mut found_best) = (Vec::new(), Vec::new(), Vec::new());
    let mut tuned_missed = 0;
    for e in &examples {
        // synthetic_frame draws the pasted image's place first: the same draws, peeked.
        let mut peek = rng.clone();
        let room = CANVAS - PASTED as usize;
        let (ox, oy) = (peek.below(room + 1) as f32, peek.below(room + 1) as f32);
        let frame = synthetic_frame(&e.pixels, 48, &mut rng)?;
        let place = [ox, oy, ox + PASTED, oy + PASTED];
        let windows: Vec<[f32; 4]> = factors.iter().map(|&k| scaled(place, k)).collect();
        let best = onet_on(&framed, &frame, &windows, 0.0)?.iter().map(|f| f.score).fold(0.0, f32::max);
        if let Some((t, _)) = tuned.as_ref().filter(|_| std::env::var_os("REPLACED").is_some()) {
            tuned_missed += usize::from(t.detect(&frame)?.is_empty());
        }
        if framed.detect(&frame)?.is_empty() {
            missed_best.push(best);
            missed.push(frame);
        } else {
            found_best.push(best);
        }
    }
    println!("{} training images in 400×400 frames: {} missed", examples.len(), missed.len());
    println!("missed, O-Net's best score about the pasted image: {}", histogram(&missed_best));
    println!("found, the same:                                    {}", histogram(&found_best));

    let negatives = faceless_frames(&mut SplitMix64::new(3))?;
    if let Some((_, t)) = tuned.as_ref().filter(|_| std::env::var_os("REPLACED").is_some()) {
        let raised: usize = negatives.iter().map(|f| t.detect(f).map(|v| v.len())).sum::<Result<_, _>>()?;
        let before: usize = negatives.iter().map(|f| bare.detect(f).map(|v| v.len())).sum::<Result<_, _>>()?;
        println!(
            "cascade with the tuned O-Net as its last stage: missed {tuned_missed} of {}; faces on {} faceless frames: {raised} (pretrained: {before})",
            examples.len(),
            negatives.len()
        );
    }
    // The detector as the app runs it (the shipped second opinion and its close look), on the
    // frames the cascade alone misses and on the faceless frames; `CLOSE=score,floor;...` tries
    // other thresholds of the close look.
    let mut app_framed = mien_trainer::detect::detector(40.0)?;
    let mut app_bare = mien_trainer::detect::detector(DetectorConfig::default().min_face_size)?;
    let settings = match std::env::var("CLOSE") {
        Ok(v) => v
            .split(';')
            .map(|p| p.split(',').map(|x| x.trim().parse::<f32>().with_context(|| format!("CLOSE: {x:?}"))).collect())
            .collect::<Result<Vec<Vec<f32>>>>()?,
        Err(_) => vec![vec![app_framed.config().close_look.unwrap_or(f32::NAN), app_framed.config().close_look_floor]],
    };
    for v in settings {
        anyhow::ensure!(v.len() == 2, "CLOSE: score,floor pairs");
        for d in [&mut app_framed, &mut app_bare] {
            d.set_config(DetectorConfig { close_look: Some(v[0]), close_look_floor: v[1], ..d.config().clone() });
        }
        let started = std::time::Instant::now();
        let still_missed =
            missed.iter().map(|f| app_framed.detect(f).map(|v| v.is_empty() as usize)).sum::<Result<usize, _>>()?;
        let ms = started.elapsed().as_secs_f64() * 1000.0 / missed.len().max(1) as f64;
        let raised: Vec<String> = negatives
            .iter()
            .map(|f| app_bare.detect(f))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .map(|f| format!("{:.3}", f.score))
            .collect();
        println!(
            "the app's detector, close look at {} with the pretrained O-Net at {}: missed {still_missed} of the {} ({ms:.0} ms each); faces on {} faceless frames: {} [{}]",
            v[0],
            v[1],
            missed.len(),
            negatives.len(),
            raised.len(),
            raised.join(" ")
        );
    }
    if std::env::var_os("ONET").is_none() {
        return Ok(());
    }

    // The close look at the lowest score, each face with the pretrained O-Net's score on its
    // window too: a face is kept at score `s` and floor `p` when the look gives it `s` and the
    // pretrained O-Net at least `p`.
    let lowest = scores.iter().copied().fold(f32::INFINITY, f32::min);
    let floors = numbers("FLOORS", "0,0.1,0.3,0.5")?;
    // `FLOOR_FACTORS="0.9;0.9,1.1,1.3"`: sets of sides (of the face's box) of the windows the
    // pretrained O-Net scores a close-look face on, its best score counting (the app: 0.9).
    let floor_sets = std::env::var("FLOOR_FACTORS")
        .unwrap_or_else(|_| "0.9".into())
        .split(';')
        .map(|set| {
            set.split(',').map(|v| v.trim().parse::<f32>().with_context(|| format!("FLOOR_FACTORS: {v:?}"))).collect()
        })
        .collect::<Result<Vec<Vec<f32>>>>()?;
    let looked = |det: &FaceDetector, pretrained: &FaceDetector, frame: &Frame| -> Result<Vec<(f32, Vec<f32>)>> {
        let mut out = Vec::new();
        for f in close_up(det, frame, &fracs, lowest)? {
            // The pretrained O-Net's best score on the face's box scaled by each set's factors.
            let mut p = Vec::new();
            for set in &floor_sets {
                let windows: Vec<[f32; 4]> = set.iter().map(|&k| scaled(f.bbox, k)).collect();
                p.push(onet_on(pretrained, frame, &windows, 0.0)?.iter().map(|g| g.score).fold(0.0, f32::max));
            }
            out.push((f.score, p));
        }
        Ok(out)
    };
    let started = std::time::Instant::now();
    let mut on_missed = Vec::new();
    for frame in &missed {
        on_missed.push(looked(look_framed, &framed, frame)?);
    }
    let ms = started.elapsed().as_secs_f64() * 1000.0 / missed.len().max(1) as f64;
    let mut on_negatives = Vec::new();
    for frame in &negatives {
        if bare.detect(frame)?.is_empty() {
            on_negatives.push(looked(look_bare, &bare, frame)?);
        }
    }
    for (k, set) in floor_sets.iter().enumerate() {
        for &score in &scores {
            for &floor in &floors {
                let kept =
                    |faces: &Vec<(f32, Vec<f32>)>| faces.iter().filter(|(s, p)| *s >= score && p[k] >= floor).count();
                let rescued = on_missed.iter().filter(|f| kept(f) > 0).count();
                let raised: usize = on_negatives.iter().map(kept).sum();
                println!(
                    "close-up look at {score}, pretrained O-Net at least {floor} on windows {set:?} of the box: rescued {rescued} of {} missed ({ms:.0} ms each); faces on {} faceless frames: {raised}",
                    missed.len(),
                    negatives.len(),
                );
            }
        }
    }
    Ok(())
}
