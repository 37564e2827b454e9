//! Turning dataset samples into the model's input: 48×48-style gray face crops.
//!
//! Datasets that are already face crops (CK+48, FER2013) are used as they are (resized if their
//! size differs). Full frames (CK+ official) are face-cropped once with the core crate's detector
//! and aligned crop, and cached on disk so later runs skip detection.

use std::path::{Path, PathBuf};

use mien::align::{crop_face, CropConfig, FaceCrop};
use mien::{FaceDetector, Frame};

use crate::datasets::{Pixels, Sample};

/// Images no larger than this (both sides) are taken to be face crops already.
pub const MAX_CROP_SIDE: u32 = 128;

/// A sample that could not be used, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub id: String,
    pub reason: String,
}

/// Area-resizes a gray square to `size`.
pub fn resize_gray(pixels: &[u8], side: u32, size: u32) -> Vec<u8> {
    if side == size {
        return pixels.to_vec();
    }
    let (s, n) = (side as usize, size as usize);
    let mut out = Vec::with_capacity(n * n);
    for y in 0..n {
        let (y0, y1) = (y * s / n, ((y + 1) * s).div_ceil(n).max(y * s / n + 1));
        for x in 0..n {
            let (x0, x1) = (x * s / n, ((x + 1) * s).div_ceil(n).max(x * s / n + 1));
            let mut acc = 0u32;
            for yy in y0..y1 {
                for xx in x0..x1 {
                    acc += pixels[yy * s + xx] as u32;
                }
            }
            out.push((acc as f32 / ((y1 - y0) * (x1 - x0)) as f32).round() as u8);
        }
    }
    out
}

/// Gray pixels of a frame (ITU-R 601 luma).
pub fn gray_of(frame: &Frame) -> Vec<u8> {
    frame.rgb().chunks_exact(3).map(|p| mien::align::luma([p[0], p[1], p[2]]).round() as u8).collect()
}

/// Produces the crops of `samples` in order; unusable samples come back as `Err` and are counted
/// by the caller, never fatal.
pub fn crops_of(
    samples: &[Sample],
    crop: &CropConfig,
    detector: Option<&FaceDetector>,
    cache: Option<&Path>,
) -> Vec<Result<FaceCrop, Skipped>> {
    samples.iter().map(|s| crop_of(s, crop, detector, cache)).collect()
}

fn crop_of(
    s: &Sample,
    crop: &CropConfig,
    detector: Option<&FaceDetector>,
    cache: Option<&Path>,
) -> Result<FaceCrop, Skipped> {
    let skip = |reason: String| Skipped { id: s.id.clone(), reason };
    let size = crop.size;
    match &s.pixels {
        Pixels::Gray48(px) => Ok(FaceCrop { size, pixels: resize_gray(px, 48, size) }),
        Pixels::File(path) => {
            let cached = cache.map(|dir| cache_path(dir, path, crop));
            if let Some(c) = cached.as_ref().filter(|c| c.exists()) {
                if let Ok(img) = image::open(c) {
                    let g = img.to_luma8();
                    if g.width() == size {
                        return Ok(FaceCrop { size, pixels: g.into_raw() });
                    }
                }
            }
            let bytes = std::fs::read(path).map_err(|e| skip(format!("cannot read: {e}")))?;
            // A large photo is analysed at its working size, as the app and `detect` do.
            let side = detector.map_or_else(mien::DetectorConfig::default, |d| d.config().clone()).photo_short_side();
            let frame = Frame::decode_photo(&bytes, Some(side)).map_err(|e| skip(e.to_string()))?.frame;
            if frame.width() <= MAX_CROP_SIDE && frame.height() <= MAX_CROP_SIDE {
                // Already a face crop: centre-square it and resize.
                let side = frame.width().min(frame.height());
                let (ox, oy) = ((frame.width() - side) / 2, (frame.height() - side) / 2);
                let gray = gray_of(&frame);
                let w = frame.width() as usize;
                let square: Vec<u8> = (0..side as usize)
                    .flat_map(|y| {
                        let row = (y + oy as usize) * w + ox as usize;
                        gray[row..row + side as usize].to_vec()
                    })
                    .collect();
                return Ok(FaceCrop { size, pixels: resize_gray(&square, side, size) });
            }
            let detector = detector.ok_or_else(|| skip("a full frame needs the face detector".into()))?;
            let faces = detector.detect(&frame).map_err(|e| skip(e.to_string()))?;
            let face = faces
                .into_iter()
                .max_by(|a, b| (a.width() * a.height()).total_cmp(&(b.width() * b.height())))
                .ok_or_else(|| skip("no face found".into()))?;
            let c = crop_face(&frame, &face, crop);
            if let Some(cp) = cached {
                if let Some(dir) = cp.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                if let Some(img) = image::GrayImage::from_raw(size, size, c.pixels.clone()) {
                    let tmp = cp.with_extension("tmp.png");
                    if img.save(&tmp).is_ok() {
                        let _ = std::fs::rename(&tmp, &cp);
                    }
                }
            }
            Ok(c)
        }
    }
}

fn cache_path(dir: &Path, source: &Path, crop: &CropConfig) -> PathBuf {
    // FNV-1a of the source path and crop settings: stable across runs and platforms.
    let key = format!("{}|{}|{}|{}|{}", source.display(), crop.size, crop.margin, crop.align, crop.shift);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    dir.join(format!("{h:016x}.png"))
}
