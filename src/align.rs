//! The aligned face crop the expression classifier eats: the face turned so that the eye line is
//! level, a margin around the detector's box, resized to a square, converted to gray.
//!
//! Detectors disagree on how tight a "face box" is, and datasets were cropped by other detectors;
//! the margin is therefore a parameter, tuned on training data and recorded in the model manifest
//! so that the browser crops exactly as training did.

use serde::{Deserialize, Serialize};

use crate::detect::Face;
use crate::frame::Frame;

/// How to cut a face out of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CropConfig {
    /// Output side, in pixels.
    pub size: u32,
    /// Extra border on each side, as a fraction of the box's longer side (0.0 = the box itself;
    /// negative values cut tighter, down to -0.4).
    pub margin: f32,
    /// Moves the window down by this fraction of its side (negative: up). Datasets centre their
    /// faces differently (some keep the forehead, some the chin).
    #[serde(default)]
    pub shift: f32,
    /// Rotate so the eye line is level.
    pub align: bool,
}

impl Default for CropConfig {
    fn default() -> Self {
        CropConfig { size: 48, margin: 0.1, shift: 0.0, align: true }
    }
}

/// A square 8-bit gray face image, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaceCrop {
    pub size: u32,
    pub pixels: Vec<u8>,
}

/// Where a crop came from: the similarity transform from crop pixels to frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropGeometry {
    pub centre: [f32; 2],
    /// Side of the square window in frame pixels.
    pub side: f32,
    /// Rotation of the window in radians (the eye-line angle).
    pub angle: f32,
}

impl CropGeometry {
    /// Frame coordinates of the crop pixel centre `(u, v)` of a crop of side `size`.
    pub fn to_frame(&self, u: f32, v: f32, size: u32) -> [f32; 2] {
        let s = self.side / size as f32;
        let dx = (u - size as f32 / 2.0) * s;
        let dy = (v - size as f32 / 2.0) * s;
        let (sin, cos) = self.angle.sin_cos();
        [self.centre[0] + cos * dx - sin * dy, self.centre[1] + sin * dx + cos * dy]
    }

    /// Crop coordinates of the frame point `p` (the inverse of [`Self::to_frame`]).
    pub fn to_crop(&self, p: [f32; 2], size: u32) -> [f32; 2] {
        let s = size as f32 / self.side;
        let dx = p[0] - self.centre[0];
        let dy = p[1] - self.centre[1];
        let (sin, cos) = self.angle.sin_cos();
        [(cos * dx + sin * dy) * s + size as f32 / 2.0, (-sin * dx + cos * dy) * s + size as f32 / 2.0]
    }
}

/// Longer side of an upright MTCNN face box, in units of the eye-centre-to-mouth-centre distance
/// (≈ 2.9–3.0 on the reference detections of the fixtures).
const BOX_PER_EYE_MOUTH: f32 = 3.0;
/// The box centre sits this far (same unit) from the eye–mouth midpoint, towards the forehead.
const CENTRE_UP_SHIFT: f32 = 0.1;

/// The window a face is cut from, under `config`.
///
/// Aligned crops take their centre and scale from the landmarks, which turn with the face, rather
/// than from the box, which bounds a turned face loosely: a photo turned by 20° gives the same
/// crop as the upright one. The constants make both agree on upright faces.
pub fn crop_geometry(face: &Face, config: &CropConfig) -> CropGeometry {
    let [x1, y1, x2, y2] = face.bbox;
    let margin = 1.0 + 2.0 * config.margin.clamp(-0.4, 4.0);
    let shift = config.shift.clamp(-1.0, 1.0);
    let side = (x2 - x1).max(y2 - y1).max(1.0) * margin;
    let box_geometry = CropGeometry { centre: [(x1 + x2) / 2.0, (y1 + y2) / 2.0 + shift * side], side, angle: 0.0 };
    if !config.align {
        return box_geometry;
    }
    let [l, r, _, ml, mr] = face.landmarks;
    let eyes = [(l[0] + r[0]) / 2.0, (l[1] + r[1]) / 2.0];
    let mouth = [(ml[0] + mr[0]) / 2.0, (ml[1] + mr[1]) / 2.0];
    let down = [mouth[0] - eyes[0], mouth[1] - eyes[1]];
    let d = (down[0] * down[0] + down[1] * down[1]).sqrt();
    let angle = (r[1] - l[1]).atan2(r[0] - l[0]);
    if d.is_nan() || d < 1.0 || !angle.is_finite() {
        return box_geometry;
    }
    let mid = [(eyes[0] + mouth[0]) / 2.0, (eyes[1] + mouth[1]) / 2.0];
    let side = BOX_PER_EYE_MOUTH * d * margin;
    // Along the face's own down direction (eyes to mouth), so the shift turns with the face.
    let along = side * shift - CENTRE_UP_SHIFT * d;
    let centre = [mid[0] + down[0] / d * along, mid[1] + down[1] / d * along];
    CropGeometry { centre, side, angle }
}

/// Cuts the aligned gray crop of `face` out of `frame`. Parts of the window outside the frame
/// take the nearest edge pixel, so a face at the border still gives a full crop.
pub fn crop_face(frame: &Frame, face: &Face, config: &CropConfig) -> FaceCrop {
    let geometry = crop_geometry(face, config);
    crop_with(frame, &geometry, config.size)
}

/// Samples `geometry` from `frame` into a `size × size` gray crop, averaging a grid of bilinear
/// samples per output pixel when shrinking, so a large face does not alias.
pub fn crop_with(frame: &Frame, geometry: &CropGeometry, size: u32) -> FaceCrop {
    let size = size.max(1);
    let ratio = geometry.side / size as f32;
    let sub = (ratio.ceil() as u32).clamp(1, 8);
    let mut pixels = Vec::with_capacity((size * size) as usize);
    for v in 0..size {
        for u in 0..size {
            let mut acc = 0f32;
            for j in 0..sub {
                for i in 0..sub {
                    let cu = u as f32 + (i as f32 + 0.5) / sub as f32;
                    let cv = v as f32 + (j as f32 + 0.5) / sub as f32;
                    let [x, y] = geometry.to_frame(cu, cv, size);
                    acc += bilinear_gray(frame, x - 0.5, y - 0.5);
                }
            }
            pixels.push((acc / (sub * sub) as f32).round().clamp(0.0, 255.0) as u8);
        }
    }
    FaceCrop { size, pixels }
}

/// ITU-R 601 luma, as PIL's `convert("L")` (how FER2013-style gray crops are made).
#[inline]
pub fn luma([r, g, b]: [u8; 3]) -> f32 {
    0.299 * r as f32 + 0.587 * g as f32 + 0.114 * b as f32
}

/// Normalised cross-correlation of two equally sized gray images: 1 when they are the same up
/// to brightness and contrast, 0 when unrelated (or when one is flat).
pub fn ncc(a: &[u8], b: &[u8]) -> f64 {
    let n = a.len().min(b.len()).max(1) as f64;
    let ma = a.iter().map(|&v| v as f64).sum::<f64>() / n;
    let mb = b.iter().map(|&v| v as f64).sum::<f64>() / n;
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x as f64 - ma, y as f64 - mb);
        ab += dx * dy;
        aa += dx * dx;
        bb += dy * dy;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa * bb).sqrt()
    }
}

fn bilinear_gray(frame: &Frame, x: f32, y: f32) -> f32 {
    let w = frame.width() as i64;
    let h = frame.height() as i64;
    // Beyond one pixel outside the frame every sample is the edge pixel anyway; clamping here
    // keeps the integer index arithmetic in range for any window (found by fuzzing: a box at
    // -2e34 overflowed `xi + 1`). A NaN coordinate reads the corner pixel.
    let x = if x.is_nan() { 0.0 } else { x.clamp(-1.0, w as f32) };
    let y = if y.is_nan() { 0.0 } else { y.clamp(-1.0, h as f32) };
    let x0 = x.floor();
    let y0 = y.floor();
    let fx = x - x0;
    let fy = y - y0;
    let at = |xi: i64, yi: i64| luma(frame.pixel(xi.clamp(0, w - 1) as u32, yi.clamp(0, h - 1) as u32));
    let (xi, yi) = (x0 as i64, y0 as i64);
    let top = at(xi, yi) * (1.0 - fx) + at(xi + 1, yi) * fx;
    let bottom = at(xi, yi + 1) * (1.0 - fx) + at(xi + 1, yi + 1) * fx;
    top * (1.0 - fy) + bottom * fy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_round_trips_and_levels_the_eyes() {
        let face = Face {
            bbox: [100.0, 100.0, 200.0, 220.0],
            score: 1.0,
            landmarks: [[120.0, 140.0], [180.0, 160.0], [150.0, 170.0], [130.0, 200.0], [170.0, 205.0]],
        };
        let g = crop_geometry(&face, &CropConfig::default());
        let l = g.to_crop(face.landmarks[0], 48);
        let r = g.to_crop(face.landmarks[1], 48);
        assert!((l[1] - r[1]).abs() < 1e-3, "eyes at rows {} and {}", l[1], r[1]);
        assert!(l[0] < r[0]);
        let back = g.to_frame(l[0], l[1], 48);
        assert!((back[0] - 120.0).abs() < 1e-3 && (back[1] - 140.0).abs() < 1e-3);
    }
}
