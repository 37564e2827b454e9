//! Fine-tuning MTCNN's O-Net on faces framed as people bring them to the app: FER2013 training
//! images pasted into the crop check's 400×400 frame, and the same images given as they are (a
//! photo that is only a face). The pretrained O-Net turns away many such faces (tight crops, grey,
//! low contrast, cut by the frame): measured with the `missed_faces` example, it scores below 0.9
//! at the known place of half the faces the cascade misses. The tuned network is a *second
//! opinion*: the detector asks it only where the cascade found nothing.
//!
//! Each image gives O-Net windows labelled as in MTCNN's own training, by their overlap with the
//! face's box: faces (IoU ≥ 0.65), parts (0.4–0.65, box regression only) and non-faces (< 0.3:
//! the frame's background, the inside of the face, windows far larger than it). The face's box is
//! the one the pretrained cascade gives where it finds the face, so the tuned network keeps the
//! cascade's idea of a box; where it misses it, the pasted place mapped by the median relation
//! of the two on the faces found. The landmarks are taught by the pretrained O-Net's own on the
//! face windows (learning without forgetting): no landmark labels are needed, and the tuned
//! network's landmarks stay those the app aligns and checks faces by.
//!
//! The first `held_out` images of the seeded sample the detection examples measure on
//! ([`crate::examples::training_sample`], seed 7) are never used, and neither are the dataset's
//! test splits or training copies of their images.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use mien::detect::boxes::{iou, padded_window, square, Candidate};
use mien::detect::resample::resize_area_padded_into;
use mien::detect::{DetectorConfig, ONet, Padding, WEIGHT_FILES};
use mien::weights::{load_pytorch_safetensors, quantize, save_pytorch_safetensors, INT8_MIN_ELEMENTS};
use mien::{FaceDetector, Frame};
use serde::Serialize;

use crate::augment::SplitMix64;
use crate::cropcheck::synthetic_frame;
use crate::detect::shipped_weights;

/// The side of a 48×48 image pasted into the crop check's frame (4× upscaled), and the frame's.
const PASTED: f32 = 192.0;
const CANVAS: usize = 400;
/// O-Net's input side.
const SIDE: usize = 48;
/// Images whose detections set the median relation between the pasted place and the box.
const MAPPING_IMAGES: usize = 400;

/// What `tune-onet` trains on and how.
#[derive(Debug, Clone, Serialize)]
pub struct OnetTuneConfig {
    /// Training images used (after the held-out ones).
    pub images: usize,
    /// The first images of the seed-7 sample, never used (what `missed_faces` measures on).
    pub held_out: usize,
    pub epochs: usize,
    /// Peak learning rate (AdamW, cosine decay after a short warm-up).
    pub lr: f64,
    pub batch: usize,
    pub seed: u64,
    /// Share of the images given as they are, at 48–160 px, instead of pasted in a frame.
    pub bare_share: f32,
    /// Also shows each image made into a non-face ([`unface`]), as two non-face windows.
    pub unfaced: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
enum Kind {
    Face,
    Part,
    NotFace,
}

/// The windows of a set of images, as O-Net's inputs with their targets.
#[derive(Default)]
struct Windows {
    input: Vec<f32>,
    kind: Vec<Kind>,
    /// Box regression target relative to the window (the cascade's convention).
    reg: Vec<[f32; 4]>,
    /// The pretrained O-Net's landmarks and face probability on the window.
    marks: Vec<[f32; 10]>,
    score: Vec<f32>,
}

impl Windows {
    fn len(&self) -> usize {
        self.kind.len()
    }
}

/// How an image is shown, with the pasted place of its face in the frame's pixels.
struct Shown {
    frame: Frame,
    place: [f32; 4],
    bare: bool,
}

fn show(pixels: &[u8], bare_share: f32, rng: &mut SplitMix64) -> Result<Shown> {
    if rng.unit() < bare_share {
        let side = 48 + rng.below(113) as u32;
        let img = image::GrayImage::from_raw(48, 48, pixels.to_vec()).context("a 48×48 image")?;
        let img = image::imageops::resize(&img, side, side, image::imageops::FilterType::Triangle);
        let frame = Frame::from_gray(side, side, img.as_raw())?;
        return Ok(Shown { frame, place: [0.0, 0.0, side as f32, side as f32], bare: true });
    }
    // synthetic_frame draws the pasted image's place first: the same draws, peeked.
    let mut peek = rng.clone();
    let room = CANVAS - PASTED as usize;
    let (ox, oy) = (peek.below(room + 1) as f32, peek.below(room + 1) as f32);
    let frame = synthetic_frame(pixels, 48, rng)?;
    Ok(Shown { frame, place: [ox, oy, ox + PASTED, oy + PASTED], bare: false })
}

/// The face the pretrained cascade finds on the pasted place, if any.
fn found_box(det: &FaceDetector, shown: &Shown) -> Result<Option<[f32; 4]>> {
    let faces = det.detect(&shown.frame)?;
    Ok(faces
        .iter()
        .filter(|f| iou(f.bbox, shown.place) > 0.3)
        .max_by(|a, b| a.score.total_cmp(&b.score))
        .map(|f| f.bbox))
}

/// The box relative to the place: `(box - place corner) / place side`, per coordinate.
fn relative(b: [f32; 4], place: [f32; 4]) -> [f32; 4] {
    let s = place[2] - place[0];
    [(b[0] - place[0]) / s, (b[1] - place[1]) / s, (b[2] - place[0]) / s, (b[3] - place[1]) / s]
}

fn median(mut v: Vec<f32>) -> f32 {
    v.sort_by(f32::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Median relation of box to place, for framed and bare images.
fn mapping(found: &[([f32; 4], bool)]) -> [[f32; 4]; 2] {
    let mut out = [[0.0, 0.0, 1.0, 1.0]; 2];
    for (k, bare) in [false, true].into_iter().enumerate() {
        let rel: Vec<[f32; 4]> = found.iter().filter(|f| f.1 == bare).map(|f| f.0).collect();
        if rel.len() >= 10 {
            out[k] = std::array::from_fn(|i| median(rel.iter().map(|r| r[i]).collect()));
        }
    }
    out
}

fn window(cx: f32, cy: f32, side: f32) -> [f32; 4] {
    [cx - side / 2.0, cy - side / 2.0, cx + side / 2.0, cy + side / 2.0]
}

/// Draws windows of `kind` about the face box `t` in a `w × h` frame.
fn draw(kind: Kind, t: [f32; 4], (w, h): (f32, f32), rng: &mut SplitMix64) -> Option<[f32; 4]> {
    let sq = square(&Candidate::of_box(t, 1.0));
    let side = sq.x2 - sq.x1;
    let (cx, cy) = ((t[0] + t[2]) / 2.0, (t[1] + t[3]) / 2.0);
    for attempt in 0..30 {
        let b = match kind {
            Kind::Face => window(
                cx + rng.symmetric(0.1) * side,
                cy + rng.symmetric(0.1) * side,
                side * (1.0 + rng.symmetric(0.12)),
            ),
            Kind::Part => window(
                cx + rng.symmetric(0.3) * side,
                cy + rng.symmetric(0.3) * side,
                side * (1.0 + rng.symmetric(0.35)),
            ),
            Kind::NotFace => match attempt % 3 {
                // Anywhere in the frame, a little past its edges too.
                0 => {
                    let s = (0.1 + 0.9 * rng.unit()) * w.min(h);
                    let (x, y) = (-0.25 * s + rng.unit() * (w - 0.5 * s), -0.25 * s + rng.unit() * (h - 0.5 * s));
                    [x, y, x + s, y + s]
                }
                // Inside the face: an eye, the mouth, a cheek.
                1 => {
                    let s = side * (0.2 + 0.3 * rng.unit());
                    window(t[0] + rng.unit() * (t[2] - t[0]), t[1] + rng.unit() * (t[3] - t[1]), s)
                }
                // Far larger than the face.
                _ => window(
                    cx + rng.symmetric(0.3) * side,
                    cy + rng.symmetric(0.3) * side,
                    side * (1.8 + 1.5 * rng.unit()),
                ),
            },
        };
        let o = iou(b, t);
        let fits = match kind {
            Kind::Face => o >= 0.65,
            Kind::Part => (0.4..0.65).contains(&o),
            Kind::NotFace => o < 0.3,
        };
        if fits && b[2] - b[0] >= 12.0 {
            return Some(b);
        }
    }
    None
}

/// The regression target of window `b` towards box `t` (`regress` with the +1 convention).
fn reg_target(b: [f32; 4], t: [f32; 4]) -> [f32; 4] {
    let (w, h) = (b[2] - b[0] + 1.0, b[3] - b[1] + 1.0);
    [(t[0] - b[0]) / w, (t[1] - b[1]) / h, (t[2] - b[2]) / w, (t[3] - b[3]) / h]
}

/// The image's 48×48 pixels no longer a face: cut into a grid of 2×2 to 4×4 blocks put back in
/// another order, or turned upside down. The texture, contrast and parts of a face, in the
/// arrangement of none: without them, every textured window of a face's size would be a face
/// to the tuned network (the frames around the faces are flat grey).
fn unface(pixels: &[u8], rng: &mut SplitMix64) -> Vec<u8> {
    if rng.below(4) == 0 {
        return pixels.iter().rev().copied().collect();
    }
    let k = 2 + rng.below(3);
    let cell = 48 / k;
    let mut order: Vec<usize> = (0..k * k).collect();
    while order.iter().enumerate().all(|(i, &o)| i == o)
        || order.iter().enumerate().filter(|(i, o)| i == *o).count() > k * k / 3
    {
        rng.shuffle(&mut order);
    }
    let mut out = pixels.to_vec();
    for (to, &from) in order.iter().enumerate() {
        let (tx, ty, fx, fy) = (to % k * cell, to / k * cell, from % k * cell, from / k * cell);
        for y in 0..cell {
            for x in 0..cell {
                out[(ty + y) * 48 + tx + x] = pixels[(fy + y) * 48 + fx + x];
            }
        }
    }
    out
}

/// Two windows where a face would be, on an image that is not one ([`unface`]).
fn unface_windows(shown: &Shown, t: [f32; 4], rng: &mut SplitMix64, out: &mut Windows) {
    let size = (shown.frame.width() as f32, shown.frame.height() as f32);
    for _ in 0..2 {
        let Some(b) = draw(Kind::Face, t, size, rng) else { continue };
        let c = Candidate::of_box(b, 1.0);
        if resize_area_padded_into(&shown.frame, padded_window(&c), SIDE, SIDE, Padding::Fill(128), &mut out.input) {
            out.kind.push(Kind::NotFace);
            out.reg.push([0.0; 4]);
        }
    }
}

/// The windows of one image: two faces, a part and three non-faces.
fn windows_of(shown: &Shown, t: [f32; 4], rng: &mut SplitMix64, out: &mut Windows) {
    let size = (shown.frame.width() as f32, shown.frame.height() as f32);
    for kind in [Kind::Face, Kind::Face, Kind::Part, Kind::NotFace, Kind::NotFace, Kind::NotFace] {
        let Some(b) = draw(kind, t, size, rng) else { continue };
        let c = Candidate::of_box(b, 1.0);
        if resize_area_padded_into(&shown.frame, padded_window(&c), SIDE, SIDE, Padding::Fill(128), &mut out.input) {
            out.kind.push(kind);
            out.reg.push(reg_target(b, t));
        }
    }
}

/// `onet`'s landmarks and face probability on every window of `input` (stacked 48×48 RGB).
fn forward_windows(onet: &ONet, input: &[f32], device: &Device) -> Result<(Vec<[f32; 10]>, Vec<f32>)> {
    let per = 3 * SIDE * SIDE;
    let (mut marks, mut scores) = (Vec::new(), Vec::new());
    for chunk in input.chunks(256 * per) {
        let n = chunk.len() / per;
        let x = Tensor::<4>::from_data(TensorData::new(chunk.to_vec(), [n, 3, SIDE, SIDE]), device);
        let (_, m, prob) = onet.forward(x);
        let m = m.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let prob = prob.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        marks.extend(m.chunks_exact(10).map(|c| std::array::from_fn(|i| c[i])));
        scores.extend(prob.chunks_exact(2).map(|p| p[1]));
    }
    Ok((marks, scores))
}

/// The pretrained O-Net's landmarks and scores on every window.
fn pretrained_outputs(onet: &ONet, w: &mut Windows, device: &Device) -> Result<()> {
    (w.marks, w.score) = forward_windows(onet, &w.input, device)?;
    Ok(())
}

/// How well a network tells the windows apart.
#[derive(Debug, Clone, Serialize)]
pub struct WindowScores {
    /// Face windows scored at least 0.9 and 0.95.
    pub faces_at_090: f64,
    pub faces_at_095: f64,
    /// Non-face windows scored at least 0.9 and 0.95.
    pub not_faces_at_090: f64,
    pub not_faces_at_095: f64,
}

fn window_scores(scores: &[f32], kinds: &[Kind]) -> WindowScores {
    let share = |kind: Kind, at: f32| {
        let of: Vec<f32> = scores.iter().zip(kinds).filter(|(_, &k)| k == kind).map(|(&s, _)| s).collect();
        of.iter().filter(|&&s| s >= at).count() as f64 / of.len().max(1) as f64
    };
    WindowScores {
        faces_at_090: share(Kind::Face, 0.9),
        faces_at_095: share(Kind::Face, 0.95),
        not_faces_at_090: share(Kind::NotFace, 0.9),
        not_faces_at_095: share(Kind::NotFace, 0.95),
    }
}

fn scores_of(onet: &ONet, w: &Windows, device: &Device) -> Result<Vec<f32>> {
    Ok(forward_windows(onet, &w.input, device)?.1)
}

/// One epoch's figures.
#[derive(Debug, Clone, Serialize)]
pub struct OnetEpoch {
    pub epoch: usize,
    pub loss: f64,
    pub seconds: f64,
    /// On the windows of the images kept apart for validation.
    pub validation: WindowScores,
}

/// What `tune-onet` writes beside the weights.
#[derive(Debug, Clone, Serialize)]
pub struct OnetManifest {
    pub network: &'static str,
    pub started_from: &'static str,
    pub config: OnetTuneConfig,
    pub reproduce: String,
    pub images_framed: usize,
    pub images_bare: usize,
    /// Images whose face the pretrained cascade found (the rest take the mapped place as box).
    pub faces_found_by_the_cascade: usize,
    pub windows: usize,
    pub validation_windows: usize,
    pub pretrained_validation: WindowScores,
    pub history: Vec<OnetEpoch>,
}

/// Fine-tunes O-Net and writes `out/onet.safetensors` (stored as the shipped MTCNN files are) and
/// `out/manifest.json`.
pub fn tune_onet(data: &Path, out: &Path, cfg: &OnetTuneConfig, reproduce: String) -> Result<()> {
    anyhow::ensure!(cfg.epochs > 0 && cfg.batch > 0 && cfg.images > 0, "epochs, batch and images must be positive");
    let examples = crate::examples::training_sample_without_test_copies(data, cfg.held_out + cfg.images, 7)?;
    anyhow::ensure!(examples.len() > cfg.held_out + 20, "{}: too few training images", data.display());
    let images = &examples[cfg.held_out..];
    eprintln!("{} training images after the {} held out", images.len(), cfg.held_out);

    let weights = shipped_weights();
    let cpu = Device::flex();
    let framed =
        FaceDetector::new(&weights, DetectorConfig { min_face_size: 40.0, ..DetectorConfig::default() }, &cpu)?;
    let bare = FaceDetector::new(&weights, DetectorConfig::default(), &cpu)?;
    let detector = |s: &Shown| if s.bare { &bare } else { &framed };

    // The relation of box to place, from the faces the cascade finds on the first images.
    let mut rng = SplitMix64::new(cfg.seed);
    let mut found = Vec::new();
    for e in images.iter().take(MAPPING_IMAGES) {
        let shown = show(&e.pixels, cfg.bare_share, &mut rng)?;
        if let Some(b) = found_box(detector(&shown), &shown)? {
            found.push((relative(b, shown.place), shown.bare));
        }
    }
    let map = mapping(&found);
    eprintln!("box relative to the pasted place (median): framed {:?}, bare {:?}", map[0], map[1]);

    let (mut train, mut val) = (Windows::default(), Windows::default());
    let (mut n_bare, mut n_found) = (0, 0);
    let started = Instant::now();
    let mut rng = SplitMix64::new(cfg.seed ^ 0x5EED);
    for (i, e) in images.iter().enumerate() {
        let shown = show(&e.pixels, cfg.bare_share, &mut rng)?;
        n_bare += usize::from(shown.bare);
        let t = match found_box(detector(&shown), &shown)? {
            Some(b) => {
                n_found += 1;
                b
            }
            None => {
                let r = map[usize::from(shown.bare)];
                let (p, s) = (shown.place, shown.place[2] - shown.place[0]);
                [p[0] + r[0] * s, p[1] + r[1] * s, p[0] + r[2] * s, p[1] + r[3] * s]
            }
        };
        // Every twentieth image is kept apart to follow the training on.
        let into = if i % 20 == 19 { &mut val } else { &mut train };
        windows_of(&shown, t, &mut rng, into);
        if cfg.unfaced {
            let not_a_face = unface(&e.pixels, &mut rng);
            let shown = show(&not_a_face, cfg.bare_share, &mut rng)?;
            let r = map[usize::from(shown.bare)];
            let (p, s) = (shown.place, shown.place[2] - shown.place[0]);
            unface_windows(
                &shown,
                [p[0] + r[0] * s, p[1] + r[1] * s, p[0] + r[2] * s, p[1] + r[3] * s],
                &mut rng,
                into,
            );
        }
        if (i + 1) % 500 == 0 {
            eprintln!("windows: {} of {} images ({:.0} s)", i + 1, images.len(), started.elapsed().as_secs_f64());
        }
    }
    let pretrained = load_pytorch_safetensors(ONet::new(&cpu), &weights.onet, WEIGHT_FILES[2])?;
    pretrained_outputs(&pretrained, &mut train, &cpu)?;
    pretrained_outputs(&pretrained, &mut val, &cpu)?;
    let pretrained_validation = window_scores(&val.score, &val.kind);
    eprintln!(
        "{} training and {} validation windows; the cascade found {n_found} of {} faces; pretrained O-Net on validation: {pretrained_validation:?}",
        train.len(),
        val.len(),
        images.len()
    );

    let device = cpu.clone().autodiff();
    device.seed(cfg.seed);
    let mut net = load_pytorch_safetensors(ONet::new(&device), &weights.onet, WEIGHT_FILES[2])?;
    let mut optim: ModuleOptimizer = AdamWConfig::new().with_weight_decay(1e-4).init();
    let ce = CrossEntropyLossConfig::new().init(&device);
    let steps = cfg.epochs * train.len().div_ceil(cfg.batch);
    let warmup = (steps / 20).max(1);
    let per = 3 * SIDE * SIDE;
    let mut history = Vec::new();
    let mut step = 0usize;
    for epoch in 0..cfg.epochs {
        let t0 = Instant::now();
        let mut order: Vec<usize> = (0..train.len()).collect();
        SplitMix64::new(cfg.seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)).shuffle(&mut order);
        let (mut loss_sum, mut batches) = (0f64, 0usize);
        for idx in order.chunks(cfg.batch) {
            let lr = if step < warmup {
                cfg.lr * (step + 1) as f64 / warmup as f64
            } else {
                let p = (step - warmup) as f64 / (steps - warmup).max(1) as f64;
                cfg.lr * (0.02 + 0.98 * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()))
            };
            step += 1;
            let mut x = Vec::with_capacity(idx.len() * per);
            let (mut cls_rows, mut cls_labels, mut reg_rows, mut reg_t, mut mark_rows, mut mark_t) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (r, &i) in idx.iter().enumerate() {
                x.extend_from_slice(&train.input[i * per..(i + 1) * per]);
                let r = r as i64;
                match train.kind[i] {
                    Kind::Face => {
                        cls_rows.push(r);
                        cls_labels.push(1i64);
                        reg_rows.push(r);
                        reg_t.extend_from_slice(&train.reg[i]);
                        mark_rows.push(r);
                        mark_t.extend_from_slice(&train.marks[i]);
                    }
                    Kind::Part => {
                        reg_rows.push(r);
                        reg_t.extend_from_slice(&train.reg[i]);
                    }
                    Kind::NotFace => {
                        cls_rows.push(r);
                        cls_labels.push(0);
                    }
                }
            }
            let n = idx.len();
            let x = Tensor::<4>::from_data(TensorData::new(x, [n, 3, SIDE, SIDE]), &device);
            let (reg, marks, logits) = net.forward_logits(x);
            let rows = |v: &[i64]| Tensor::<1, Int>::from_data(TensorData::new(v.to_vec(), [v.len()]), &device);
            let mut loss = ce.forward(
                logits.select(0, rows(&cls_rows)),
                Tensor::<1, Int>::from_data(TensorData::new(cls_labels.clone(), [cls_labels.len()]), &device),
            );
            if !reg_rows.is_empty() {
                let t = Tensor::<2>::from_data(TensorData::new(reg_t, [reg_rows.len(), 4]), &device);
                loss = loss + (reg.select(0, rows(&reg_rows)) - t).powf_scalar(2.0).mean().mul_scalar(0.5);
            }
            if !mark_rows.is_empty() {
                let t = Tensor::<2>::from_data(TensorData::new(mark_t, [mark_rows.len(), 10]), &device);
                loss = loss + (marks.select(0, rows(&mark_rows)) - t).powf_scalar(2.0).mean().mul_scalar(0.5);
            }
            loss_sum += loss.clone().into_scalar::<f32>() as f64;
            batches += 1;
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(lr, net, grads);
            if batches % 100 == 0 {
                eprintln!(
                    "epoch {}/{}: {} of {} windows, loss {:.4} ({:.0} s)",
                    epoch + 1,
                    cfg.epochs,
                    batches * cfg.batch,
                    train.len(),
                    loss_sum / batches as f64,
                    t0.elapsed().as_secs_f64()
                );
            }
        }
        let valid = net.valid();
        let validation = window_scores(&scores_of(&valid, &val, &cpu)?, &val.kind);
        let e = OnetEpoch {
            epoch: epoch + 1,
            loss: loss_sum / batches.max(1) as f64,
            seconds: t0.elapsed().as_secs_f64(),
            validation,
        };
        eprintln!("epoch {}: loss {:.4}, {:.0} s, validation {:?}", e.epoch, e.loss, e.seconds, e.validation);
        history.push(e);
    }

    std::fs::create_dir_all(out)?;
    let f32_bytes = save_pytorch_safetensors(&net.valid(), WEIGHT_FILES[2])?;
    let stored = quantize(&f32_bytes, WEIGHT_FILES[2], INT8_MIN_ELEMENTS)?;
    // The file must load as the detector loads it.
    load_pytorch_safetensors(ONet::new(&cpu), &stored, WEIGHT_FILES[2])?;
    crate::fsutil::write_atomic(&out.join("onet.safetensors"), &stored)?;
    let manifest = OnetManifest {
        network: "MTCNN O-Net (facenet-pytorch 2.6.0 layout), fine-tuned",
        started_from: "assets/mtcnn/onet.safetensors",
        config: cfg.clone(),
        reproduce,
        images_framed: images.len() - n_bare,
        images_bare: n_bare,
        faces_found_by_the_cascade: n_found,
        windows: train.len(),
        validation_windows: val.len(),
        pretrained_validation,
        history,
    };
    crate::fsutil::write_atomic(&out.join("manifest.json"), serde_json::to_string_pretty(&manifest)?.as_bytes())?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
