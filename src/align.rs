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
///
/// The samples are those of [`CropGeometry::to_frame`], read bilinearly from the frame's luma
/// (pixels beyond the edge repeat it), value for value as the per-sample definition in this
/// file's tests computes them. The classify step has a budget of a few milliseconds and a
/// shrinking crop takes up to 64 samples per pixel, so what does not change between samples is
/// computed once: the rotation, each sample column's and row's share of the coordinates, the luma
/// of the pixels under the window, and, for an upright window (the shipped model's), the
/// bilinear neighbours and weights of each column and row.
pub fn crop_with(frame: &Frame, geometry: &CropGeometry, size: u32) -> FaceCrop {
    let size = size.max(1);
    // Frame pixels per crop pixel (as in `to_frame`), and samples per crop pixel along each axis.
    let scale = geometry.side / size as f32;
    let sub = (scale.ceil() as u32).clamp(1, 8) as usize;
    let gray = GrayWindow::under(frame, geometry, size);
    // `to_frame(cu, cv)` is `[(cx + cos·dx) − sin·dy, (cy + sin·dx) + cos·dy]` with dx from the
    // sample's column and dy from its row: the bracketed terms per column, the rest per row.
    let half = size as f32 / 2.0;
    let (sin, cos) = geometry.angle.sin_cos();
    let [cx, cy] = geometry.centre;
    let offset: Vec<f32> = (0..sub).map(|i| (i as f32 + 0.5) / sub as f32).collect();
    let shift = |n: usize| (n / sub) as f32 + offset[n % sub] - half;
    let samples = size as usize * sub;
    let (mut col_x, mut col_y) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    let (mut row_x, mut row_y) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for n in 0..samples {
        // The same offset from the centre serves as dx for column n and as dy for row n.
        let d = shift(n) * scale;
        col_x.push(cx + cos * d);
        col_y.push(cy + sin * d);
        row_x.push(sin * d);
        row_y.push(cos * d);
    }
    let finite = |v: &Vec<f32>| v.iter().all(|c| c.is_finite());
    // Upright, sin·dy and sin·dx are zeros: x comes from the column alone, y from the row alone.
    let upright = sin == 0.0 && [&col_x, &col_y, &row_x, &row_y].into_iter().all(finite);
    let (cols, rows): (Vec<Taps>, Vec<Taps>) = if upright {
        (
            col_x.iter().map(|&x| gray.taps_x(x - 0.5)).collect(),
            row_y.iter().map(|&y| gray.taps_y(cy + y - 0.5)).collect(),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let taps = |k: usize, l: usize| {
        if upright {
            (cols[k], rows[l])
        } else {
            let (x, y) = (col_x[k] - row_x[l], col_y[k] + row_y[l]);
            (gray.taps_x(x - 0.5), gray.taps_y(y - 0.5))
        }
    };
    // One loop per source of luma, so that the choice is not made again for every read.
    let pixels = match &gray.luma {
        Some(cache) => average(size as usize, sub, |i| cache[i], taps),
        None => {
            let rgb = frame.rgb();
            average(size as usize, sub, |i| luma([rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]]), taps)
        }
    };
    FaceCrop { size, pixels }
}

/// The crop's pixels: the mean of each output pixel's `sub × sub` bilinear samples, with
/// `taps(k, l)` the neighbours of sample column `k` and row `l` and `read` the luma at an index.
fn average(
    size: usize,
    sub: usize,
    read: impl Fn(usize) -> f32,
    taps: impl Fn(usize, usize) -> (Taps, Taps),
) -> Vec<u8> {
    let mut pixels = Vec::with_capacity(size * size);
    for v in 0..size {
        for u in 0..size {
            let mut acc = 0f32;
            for l in v * sub..(v + 1) * sub {
                for k in u * sub..(u + 1) * sub {
                    let (x, y) = taps(k, l);
                    let at = |row: usize, col: usize| read(row + col);
                    let top = at(y.near, x.near) * (1.0 - x.weight) + at(y.near, x.far) * x.weight;
                    let bottom = at(y.far, x.near) * (1.0 - x.weight) + at(y.far, x.far) * x.weight;
                    acc += top * (1.0 - y.weight) + bottom * y.weight;
                }
            }
            pixels.push((acc / (sub * sub) as f32).round().clamp(0.0, 255.0) as u8);
        }
    }
    pixels
}

/// The two neighbours (indices into a [`GrayWindow`] row or column) of a sample position along
/// one axis, and the weight of the second.
#[derive(Debug, Clone, Copy)]
struct Taps {
    near: usize,
    far: usize,
    weight: f32,
}

/// Windows whose pixels are at most this many get their luma computed once (16 MB of f32);
/// larger ones, which only huge photos have, read the frame directly rather than double its
/// memory.
const CACHED_LUMA_PIXELS: i64 = 1 << 22;

/// The frame's luma inside a rectangle, read bilinearly as if it were the frame: from a cache of
/// the rectangle's luma, or, for a rectangle too large to copy (then the whole frame), from the
/// frame's pixels.
struct GrayWindow {
    frame_width: i64,
    frame_height: i64,
    /// The rectangle, in frame pixels: columns `x0..=x1`, rows `y0..=y1`.
    x0: i64,
    y0: i64,
    x1: i64,
    y1: i64,
    luma: Option<Vec<f32>>,
}

impl GrayWindow {
    /// The pixels a crop of `geometry` can read: the window's bounding box with a two-pixel
    /// border (for bilinear neighbours and rounding), clipped to the frame; the whole frame,
    /// uncached, when the geometry is not finite (a NaN sample reads the corner pixel, an infinite
    /// one an edge) or the box too large.
    fn under(frame: &Frame, geometry: &CropGeometry, size: u32) -> GrayWindow {
        let (w, h) = (frame.width() as i64, frame.height() as i64);
        let corners = [(0.0, 0.0), (size as f32, 0.0), (0.0, size as f32), (size as f32, size as f32)]
            .map(|(u, v)| geometry.to_frame(u, v, size));
        let whole = GrayWindow { frame_width: w, frame_height: h, x0: 0, y0: 0, x1: w - 1, y1: h - 1, luma: None };
        if !corners.iter().flatten().all(|c| c.is_finite()) {
            return whole;
        }
        let lo = |axis: usize| corners.iter().map(|c| c[axis]).fold(f32::INFINITY, f32::min);
        let hi = |axis: usize| corners.iter().map(|c| c[axis]).fold(f32::NEG_INFINITY, f32::max);
        // Clamped in f32 first, so a window far outside the frame casts without overflow.
        let clip = |value: f32, limit: i64| value.clamp(-4.0, limit as f32 + 4.0) as i64;
        let x0 = (clip(lo(0).floor(), w) - 2).clamp(0, w - 1);
        let y0 = (clip(lo(1).floor(), h) - 2).clamp(0, h - 1);
        let x1 = (clip(hi(0).ceil(), w) + 2).clamp(x0, w - 1);
        let y1 = (clip(hi(1).ceil(), h) + 2).clamp(y0, h - 1);
        if (x1 - x0 + 1) * (y1 - y0 + 1) > CACHED_LUMA_PIXELS {
            return whole;
        }
        let mut luma = Vec::with_capacity(((x1 - x0 + 1) * (y1 - y0 + 1)) as usize);
        for y in y0..=y1 {
            for x in x0..=x1 {
                luma.push(self::luma(frame.pixel(x as u32, y as u32)));
            }
        }
        GrayWindow { luma: Some(luma), x0, y0, x1, y1, ..whole }
    }

    fn stride(&self) -> usize {
        (self.x1 - self.x0 + 1) as usize
    }

    /// The neighbouring columns of frame position `x` (pixel centres at integers).
    fn taps_x(&self, x: f32) -> Taps {
        Self::taps(x, self.frame_width, self.x0, self.x1, 1)
    }

    /// The neighbouring rows of frame position `y`, as offsets into `luma`.
    fn taps_y(&self, y: f32) -> Taps {
        Self::taps(y, self.frame_height, self.y0, self.y1, self.stride())
    }

    /// Beyond one pixel outside the frame every sample is the edge pixel anyway; clamping first
    /// keeps the integer index arithmetic in range for any window (found by fuzzing: a box at
    /// -2e34 overflowed `xi + 1`). A NaN coordinate reads the corner pixel.
    fn taps(p: f32, limit: i64, lo: i64, hi: i64, step: usize) -> Taps {
        let p = if p.is_nan() { 0.0 } else { p.clamp(-1.0, limit as f32) };
        let floor = p.floor();
        let index = |i: i64| (i.clamp(0, limit - 1).clamp(lo, hi) - lo) as usize * step;
        Taps { near: index(floor as i64), far: index(floor as i64 + 1), weight: p - floor }
    }
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

    /// `crop_with` as first written: every sample through `to_frame` and the frame itself.
    fn crop_by_definition(frame: &Frame, geometry: &CropGeometry, size: u32) -> Vec<u8> {
        let size = size.max(1);
        let sub = ((geometry.side / size as f32).ceil() as u32).clamp(1, 8);
        let mut pixels = Vec::new();
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
        pixels
    }

    /// The definition: four luma reads of the frame per sample.
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

    #[test]
    fn crop_reads_exactly_the_samples_of_its_definition() {
        let path = crate::test_dir().join("tests/fixtures/faces/astronaut_eileen_collins.png");
        let frame = Frame::decode(&std::fs::read(path).unwrap()).unwrap();
        let (w, h) = (frame.width() as f32, frame.height() as f32);
        let mut windows = vec![
            // Around the face, upright and turned, shrinking (sub-sampled) and enlarging.
            CropGeometry { centre: [w / 2.0, h / 2.5], side: w / 2.0, angle: 0.0 },
            CropGeometry { centre: [w / 2.0, h / 2.5], side: w / 2.0, angle: 0.35 },
            CropGeometry { centre: [w / 3.0, h / 2.0], side: 30.0, angle: -1.2 },
            CropGeometry { centre: [w / 2.0, h / 2.0], side: 3.0 * w, angle: 2.0 },
            // Across each edge, and wholly outside.
            CropGeometry { centre: [0.0, 0.0], side: 200.0, angle: 0.1 },
            CropGeometry { centre: [0.0, 0.0], side: 200.0, angle: -0.0 },
            CropGeometry { centre: [w - 10.3, 7.7], side: 91.0, angle: 0.0 },
            CropGeometry { centre: [w, h], side: 200.0, angle: -0.1 },
            CropGeometry { centre: [-500.0, h / 2.0], side: 100.0, angle: 0.0 },
            CropGeometry { centre: [w / 2.0, h + 900.0], side: 100.0, angle: 0.7 },
            // What fuzzing found: far away, not finite.
            CropGeometry { centre: [-2e34, 5.0], side: 40.0, angle: 0.0 },
            CropGeometry { centre: [f32::NAN, 10.0], side: 40.0, angle: 0.0 },
            CropGeometry { centre: [10.0, 10.0], side: 40.0, angle: f32::NAN },
            CropGeometry { centre: [10.0, 10.0], side: f32::INFINITY, angle: 0.0 },
        ];
        windows.push(CropGeometry { side: 1.0, ..windows[0] });
        for geometry in &windows {
            for size in [48, 13, 1] {
                let crop = crop_with(&frame, geometry, size);
                assert_eq!(crop.pixels, crop_by_definition(&frame, geometry, size), "{geometry:?} at {size}");
            }
        }
    }
}
