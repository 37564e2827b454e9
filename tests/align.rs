//! The aligned face crop on real photos: eyes level, face centred, and the same crop whether the
//! photo is upright or turned.

mod common;

use common::{detector, fixture};
use mien::align::{crop_face, crop_geometry, CropConfig};
use mien::{Face, Frame};

fn load(rel: &str) -> Frame {
    Frame::decode(&std::fs::read(fixture(rel)).unwrap()).unwrap()
}

fn best_face(frame: &Frame) -> Face {
    let faces = detector().detect(frame).unwrap();
    faces.into_iter().max_by(|a, b| a.score.total_cmp(&b.score)).expect("a face")
}

/// Rotates `frame` by `degrees` about its centre (bilinear, gray border), same size.
fn rotate(frame: &Frame, degrees: f32) -> Frame {
    let (w, h) = (frame.width() as i64, frame.height() as i64);
    let (s, c) = degrees.to_radians().sin_cos();
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            // Inverse map: output pixel → source position.
            let dx = x as f32 + 0.5 - cx;
            let dy = y as f32 + 0.5 - cy;
            let sx = c * dx + s * dy + cx - 0.5;
            let sy = -s * dx + c * dy + cy - 0.5;
            let (x0, y0) = (sx.floor() as i64, sy.floor() as i64);
            let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
            let at = |xi: i64, yi: i64, ch: usize| -> f32 {
                if xi < 0 || yi < 0 || xi >= w || yi >= h {
                    128.0
                } else {
                    frame.pixel(xi as u32, yi as u32)[ch] as f32
                }
            };
            for ch in 0..3 {
                let top = at(x0, y0, ch) * (1.0 - fx) + at(x0 + 1, y0, ch) * fx;
                let bottom = at(x0, y0 + 1, ch) * (1.0 - fx) + at(x0 + 1, y0 + 1, ch) * fx;
                rgb.push((top * (1.0 - fy) + bottom * fy).round() as u8);
            }
        }
    }
    Frame::from_rgb(frame.width(), frame.height(), rgb).unwrap()
}

/// Normalised cross-correlation of the central 60 % of two equally sized square gray crops (the
/// face itself; the corners show background, which a turned photo changes).
fn ncc(a: &[u8], b: &[u8]) -> f64 {
    let n = (a.len() as f64).sqrt() as usize;
    let (lo, hi) = (n / 5, n - n / 5);
    let centre = |v: &[u8]| -> Vec<u8> {
        (lo..hi).flat_map(|y| (lo..hi).map(move |x| (y, x))).map(|(y, x)| v[y * n + x]).collect()
    };
    mien::align::ncc(&centre(a), &centre(b))
}

#[test]
fn crop_levels_the_eyes_and_has_the_requested_size() {
    let frame = load("faces/grace_hopper.jpg");
    let face = best_face(&frame);
    let config = CropConfig { size: 64, margin: 0.15, shift: 0.0, align: true };
    let crop = crop_face(&frame, &face, &config);
    assert_eq!(crop.size, 64);
    assert_eq!(crop.pixels.len(), 64 * 64);
    let g = crop_geometry(&face, &config);
    let l = g.to_crop(face.landmarks[0], 64);
    let r = g.to_crop(face.landmarks[1], 64);
    assert!((l[1] - r[1]).abs() < 0.01, "eye rows {} vs {}", l[1], r[1]);
    // Eyes in the upper half, left of right, roughly symmetric about the centre.
    assert!(l[1] < 32.0 && l[0] < 32.0 && r[0] > 32.0, "eyes at {l:?} {r:?}");
    // A real face crop has contrast (not a flat border fill).
    let (min, max) = crop.pixels.iter().fold((255, 0), |(lo, hi), &p| (lo.min(p), hi.max(p)));
    assert!(max - min > 100, "flat crop: {min}..{max}");
}

#[test]
fn a_turned_photo_gives_the_same_aligned_crop() {
    let config = CropConfig { size: 48, margin: 0.1, shift: 0.0, align: true };
    for rel in ["faces/astronaut_eileen_collins.png", "faces/grace_hopper.jpg"] {
        let upright = load(rel);
        let turned = rotate(&upright, 20.0);
        let a = crop_face(&upright, &best_face(&upright), &config);
        let b = crop_face(&turned, &best_face(&turned), &config);
        let aligned = ncc(&a.pixels, &b.pixels);
        // Without alignment the turned face stays turned, and the crops differ more.
        let plain = CropConfig { align: false, ..config };
        let c = crop_face(&upright, &best_face(&upright), &plain);
        let d = crop_face(&turned, &best_face(&turned), &plain);
        let unaligned = ncc(&c.pixels, &d.pixels);
        eprintln!("{rel}: aligned {aligned:.3}, unaligned {unaligned:.3}");
        assert!(aligned > 0.85, "{rel}: aligned crops correlate only {aligned:.3}");
        assert!(aligned > unaligned + 0.3, "{rel}: aligned {aligned:.3} vs unaligned {unaligned:.3}");
    }
}
