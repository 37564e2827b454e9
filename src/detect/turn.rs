//! The turned look: the frame rotated about its centre, so that a face tilted far from upright
//! (which MTCNN, trained on faces within about ±30°, does not score as a face) stands upright in
//! it, and the way from the rotated frame's pixels back to the frame's.

use crate::frame::Frame;

use super::Face;

/// A frame rotated by an angle, on a canvas large enough to hold all of it; the corners the
/// frame does not cover are filled with a uniform grey.
pub struct Turned {
    pub frame: Frame,
    cos: f32,
    sin: f32,
    centre_in: [f32; 2],
    centre_out: [f32; 2],
}

/// Rotates `frame` by `degrees` (positive turns the picture anticlockwise on screen, so a face
/// tilted clockwise comes upright), sampling bilinearly; uncovered pixels are `fill`.
pub fn turn(frame: &Frame, degrees: f32, fill: u8) -> Turned {
    let (sin, cos) = degrees.to_radians().sin_cos();
    let (w, h) = (frame.width() as f32, frame.height() as f32);
    let ow = (w * cos.abs() + h * sin.abs()).ceil().max(1.0) as u32;
    let oh = (w * sin.abs() + h * cos.abs()).ceil().max(1.0) as u32;
    let centre_in = [w / 2.0, h / 2.0];
    let centre_out = [ow as f32 / 2.0, oh as f32 / 2.0];
    let (fw, fh) = (frame.width() as usize, frame.height() as usize);
    let src = frame.rgb();
    let mut rgb = vec![fill; ow as usize * oh as usize * 3];
    for v in 0..oh as usize {
        for u in 0..ow as usize {
            // The source point of this pixel's centre, in pixel-index coordinates.
            let (dx, dy) = (u as f32 + 0.5 - centre_out[0], v as f32 + 0.5 - centre_out[1]);
            let x = centre_in[0] + cos * dx - sin * dy - 0.5;
            let y = centre_in[1] + sin * dx + cos * dy - 0.5;
            if x < -0.5 || y < -0.5 || x > fw as f32 - 0.5 || y > fh as f32 - 0.5 {
                continue;
            }
            let (x0, y0) = (x.floor(), y.floor());
            let (ax, ay) = (x - x0, y - y0);
            let clamp = |i: f32, n: usize| (i.max(0.0) as usize).min(n - 1);
            let (xa, xb) = (clamp(x0, fw), clamp(x0 + 1.0, fw));
            let (ya, yb) = (clamp(y0, fh), clamp(y0 + 1.0, fh));
            let out = (v * ow as usize + u) * 3;
            for c in 0..3 {
                let p = |xx: usize, yy: usize| src[(yy * fw + xx) * 3 + c] as f32;
                let top = p(xa, ya) * (1.0 - ax) + p(xb, ya) * ax;
                let bottom = p(xa, yb) * (1.0 - ax) + p(xb, yb) * ax;
                rgb[out + c] = (top * (1.0 - ay) + bottom * ay).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    let frame = Frame::from_rgb(ow, oh, rgb).expect("the canvas is ow × oh × 3 bytes");
    Turned { frame, cos, sin, centre_in, centre_out }
}

impl Turned {
    /// A point of the rotated frame, in the original frame's pixels.
    pub fn back(&self, [x, y]: [f32; 2]) -> [f32; 2] {
        let (dx, dy) = (x - self.centre_out[0], y - self.centre_out[1]);
        [self.centre_in[0] + self.cos * dx - self.sin * dy, self.centre_in[1] + self.sin * dx + self.cos * dy]
    }

    /// A face found in the rotated frame, in the original frame's pixels: its landmarks rotated
    /// back, its box the same size about its rotated-back centre.
    pub fn face_back(&self, face: &Face) -> Face {
        let [x1, y1, x2, y2] = face.bbox;
        let [cx, cy] = self.back([(x1 + x2) / 2.0, (y1 + y2) / 2.0]);
        let (hw, hh) = ((x2 - x1) / 2.0, (y2 - y1) / 2.0);
        Face {
            bbox: [cx - hw, cy - hh, cx + hw, cy + hh],
            score: face.score,
            landmarks: face.landmarks.map(|p| self.back(p)),
        }
    }
}

/// Whether the five landmarks of an upright face sit where a face's do: both eyes above the
/// nose and the nose above the mouth, the left eye and mouth corner left of the right ones, and
/// the eyes a plausible share of the box apart. Windows of texture that O-Net scores high often
/// place them anyhow.
pub fn plausible_landmarks(face: &Face) -> bool {
    let [le, re, nose, ml, mr] = face.landmarks;
    let width = face.width();
    let eye_gap = re[0] - le[0];
    let eyes_y = le[1].max(re[1]);
    let mouth_y = ml[1].min(mr[1]);
    eye_gap > 0.2 * width
        && eye_gap < 0.8 * width
        && mr[0] > ml[0]
        && nose[1] > eyes_y
        && mouth_y > nose[1]
        && nose[0] > le[0]
        && nose[0] < re[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_turned_and_back_is_where_it_was() {
        let frame = Frame::from_rgb(40, 30, vec![0; 40 * 30 * 3]).unwrap();
        for degrees in [20.0, -20.0, 40.0, -40.0, 90.0] {
            let t = turn(&frame, degrees, 128);
            // The rotated frame's centre is the frame's centre.
            let [x, y] = t.back([t.frame.width() as f32 / 2.0, t.frame.height() as f32 / 2.0]);
            assert!((x - 20.0).abs() < 1e-4 && (y - 15.0).abs() < 1e-4, "{degrees}: {x} {y}");
        }
    }

    #[test]
    fn a_bright_pixel_lands_where_the_rotation_puts_it() {
        let (w, h) = (50u32, 40u32);
        let mut rgb = vec![0u8; (w * h * 3) as usize];
        let (px, py) = (35usize, 12usize);
        for c in 0..3 {
            rgb[(py * w as usize + px) * 3 + c] = 255;
        }
        let frame = Frame::from_rgb(w, h, rgb).unwrap();
        let t = turn(&frame, 30.0, 0);
        // The brightest pixel of the rotated frame maps back onto the bright pixel.
        let (tw, th) = (t.frame.width(), t.frame.height());
        let (mut best, mut at) = (0u8, (0, 0));
        for v in 0..th {
            for u in 0..tw {
                let p = t.frame.pixel(u, v)[0];
                if p > best {
                    (best, at) = (p, (u, v));
                }
            }
        }
        let [x, y] = t.back([at.0 as f32 + 0.5, at.1 as f32 + 0.5]);
        assert!((x - (px as f32 + 0.5)).abs() < 1.0 && (y - (py as f32 + 0.5)).abs() < 1.0, "{x} {y}");
    }
}
