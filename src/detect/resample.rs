//! Area resampling, exactly as PyTorch's `interpolate(mode="area")` (adaptive average pooling):
//! output cell `i` averages input rows/columns `floor(i·in/out) .. ceil((i+1)·in/out)`.
//! The pyramid and the R/O-Net crops are both made with it, on raw 0–255 values, and normalised
//! afterwards, as in the reference pipeline.

use crate::frame::Frame;

/// Normalisation of MTCNN inputs: `(v - 127.5) / 128`.
#[inline]
pub fn normalise(v: f32) -> f32 {
    (v - 127.5) * 0.0078125
}

/// Resizes the window `[x0, x1) × [y0, y1)` of `frame` to `out_w × out_h` and appends it to `out`
/// as normalised planar CHW (R, G, B planes).
pub fn resize_area_into(
    frame: &Frame,
    window: (usize, usize, usize, usize),
    out_w: usize,
    out_h: usize,
    out: &mut Vec<f32>,
) {
    let (x0, y0, x1, y1) = window;
    let in_w = x1 - x0;
    let in_h = y1 - y0;
    let cols = bins(in_w, out_w);
    let stride = frame.width() as usize * 3;
    let rgb = frame.rgb();
    // Horizontal pass: for each input row of the window, average the column bins.
    let mut horiz = vec![0f32; in_h * out_w * 3];
    for r in 0..in_h {
        let line = &rgb[(y0 + r) * stride..(y0 + r + 1) * stride];
        for (o, &(s, e)) in cols.iter().enumerate() {
            let mut acc = [0f32; 3];
            for c in (x0 + s)..(x0 + e) {
                acc[0] += line[c * 3] as f32;
                acc[1] += line[c * 3 + 1] as f32;
                acc[2] += line[c * 3 + 2] as f32;
            }
            let n = (e - s) as f32;
            let dst = (r * out_w + o) * 3;
            horiz[dst] = acc[0] / n;
            horiz[dst + 1] = acc[1] / n;
            horiz[dst + 2] = acc[2] / n;
        }
    }
    vertical_pass(&horiz, in_h, out_w, out_h, out);
}

/// The vertical half of the area resize: averages the row bins of `horiz` (`in_h` rows of
/// `out_w` packed RGB cells) and appends them to `out` planar and normalised.
fn vertical_pass(horiz: &[f32], in_h: usize, out_w: usize, out_h: usize, out: &mut Vec<f32>) {
    let rows = bins(in_h, out_h);
    let base = out.len();
    out.resize(base + 3 * out_h * out_w, 0.0);
    for (o, &(s, e)) in rows.iter().enumerate() {
        let n = (e - s) as f32;
        for x in 0..out_w {
            let mut acc = [0f32; 3];
            for r in s..e {
                let src = (r * out_w + x) * 3;
                acc[0] += horiz[src];
                acc[1] += horiz[src + 1];
                acc[2] += horiz[src + 2];
            }
            for ch in 0..3 {
                out[base + ch * out_h * out_w + o * out_w + x] = normalise(acc[ch] / n);
            }
        }
    }
}

/// What [`resize_area_padded_into`] puts where a window reaches past the frame.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Padding {
    /// A constant grey level, 0–255.
    Fill(u8),
    /// The nearest pixel of the frame (edge replication).
    Edge,
}

/// [`resize_area_into`] for a window that may reach past the frame: the pixels outside it are
/// made by `padding`, so a face that touches an edge keeps its proportions instead of being
/// stretched over the part of the window that is inside. Returns false (and appends nothing)
/// when the window is empty or entirely outside the frame.
pub fn resize_area_padded_into(
    frame: &Frame,
    window: (i64, i64, i64, i64),
    out_w: usize,
    out_h: usize,
    padding: Padding,
    out: &mut Vec<f32>,
) -> bool {
    let (x0, y0, x1, y1) = window;
    let (w, h) = (frame.width() as i64, frame.height() as i64);
    if x1 <= x0 || y1 <= y0 || x1 <= 0 || y1 <= 0 || x0 >= w || y0 >= h {
        return false;
    }
    if x0 >= 0 && y0 >= 0 && x1 <= w && y1 <= h {
        resize_area_into(frame, (x0 as usize, y0 as usize, x1 as usize, y1 as usize), out_w, out_h, out);
        return true;
    }
    let (in_w, in_h) = ((x1 - x0) as usize, (y1 - y0) as usize);
    let cols = bins(in_w, out_w);
    let rgb = frame.rgb();
    let pixel = |x: i64, y: i64| -> [f32; 3] {
        match padding {
            Padding::Fill(v) if !(0..w).contains(&x) || !(0..h).contains(&y) => [v as f32; 3],
            _ => {
                let i = ((y.clamp(0, h - 1) * w + x.clamp(0, w - 1)) * 3) as usize;
                [rgb[i] as f32, rgb[i + 1] as f32, rgb[i + 2] as f32]
            }
        }
    };
    let mut horiz = vec![0f32; in_h * out_w * 3];
    for r in 0..in_h {
        for (o, &(s, e)) in cols.iter().enumerate() {
            let mut acc = [0f32; 3];
            for c in s..e {
                let p = pixel(x0 + c as i64, y0 + r as i64);
                acc[0] += p[0];
                acc[1] += p[1];
                acc[2] += p[2];
            }
            let n = (e - s) as f32;
            let dst = (r * out_w + o) * 3;
            horiz[dst..dst + 3].copy_from_slice(&acc.map(|a| a / n));
        }
    }
    vertical_pass(&horiz, in_h, out_w, out_h, out);
    true
}

/// Pads a normalised planar (CHW, 3 planes) `w × h` image by `p` cells on every side.
pub fn pad_planar(input: &[f32], w: usize, h: usize, p: usize, padding: Padding) -> Vec<f32> {
    let (pw, ph) = (w + 2 * p, h + 2 * p);
    let mut out = Vec::with_capacity(3 * pw * ph);
    for plane in input.chunks_exact(w * h).take(3) {
        for y in 0..ph {
            let sy = y.saturating_sub(p).min(h - 1);
            let inside_y = (p..p + h).contains(&y);
            for x in 0..pw {
                let inside = inside_y && (p..p + w).contains(&x);
                out.push(match (inside, padding) {
                    (false, Padding::Fill(v)) => normalise(v as f32),
                    _ => plane[sy * w + x.saturating_sub(p).min(w - 1)],
                });
            }
        }
    }
    out
}

/// Area-downscales a packed 8-bit image of `channels` channels (1 gray, 2 gray + alpha, 3 RGB,
/// 4 RGBA) to `out_w × out_h` RGB, with the same bins as [`resize_area_into`]. It keeps one
/// output row of sums, so a 100-megapixel photo becomes a working copy without a second buffer
/// of its size (that is what bounds the memory of a large photo's analysis).
pub fn downscale_rgb(src: &[u8], width: usize, height: usize, channels: usize, out_w: usize, out_h: usize) -> Vec<u8> {
    downscale_rgb_region(src, (width, height, channels), (out_w, out_h), (0, 0, out_w, out_h))
}

/// [`downscale_rgb`] computed only for the output pixels of `region` (`[x0, x1) × [y0, y1)`,
/// clamped to the output); the others are left black. Each computed pixel is exactly the one
/// [`downscale_rgb`] gives: a caller that reads only that region (following faces, which needs
/// a window about each) saves the rest of the work.
pub fn downscale_rgb_region(
    src: &[u8],
    (width, height, channels): (usize, usize, usize),
    (out_w, out_h): (usize, usize),
    (x0, y0, x1, y1): (usize, usize, usize, usize),
) -> Vec<u8> {
    let cols = bins(width, out_w);
    let rows = bins(height, out_h);
    let (x1, y1) = (x1.min(out_w), y1.min(out_h));
    let stride = width * channels;
    let mut out = vec![0u8; out_w * out_h * 3];
    if x0 >= x1 || y0 >= y1 {
        return out;
    }
    let mut acc = vec![0f32; (x1 - x0) * 3];
    for (oy, &(s, e)) in rows.iter().enumerate().take(y1).skip(y0) {
        acc.iter_mut().for_each(|a| *a = 0.0);
        for r in s..e {
            let line = &src[r * stride..(r + 1) * stride];
            for (o, &(cs, ce)) in cols[x0..x1].iter().enumerate() {
                let mut sum = [0u32; 3];
                for c in cs..ce {
                    let px = &line[c * channels..(c + 1) * channels];
                    if channels >= 3 {
                        sum[0] += px[0] as u32;
                        sum[1] += px[1] as u32;
                        sum[2] += px[2] as u32;
                    } else {
                        sum[0] += px[0] as u32;
                    }
                }
                if channels < 3 {
                    sum = [sum[0]; 3];
                }
                let n = (ce - cs) as f32;
                for ch in 0..3 {
                    acc[o * 3 + ch] += sum[ch] as f32 / n;
                }
            }
        }
        let n = (e - s) as f32;
        let row = &mut out[(oy * out_w + x0) * 3..(oy * out_w + x1) * 3];
        for (v, &a) in row.iter_mut().zip(&acc) {
            *v = (a / n).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// Bin boundaries of adaptive pooling from `input` cells to `output` cells.
fn bins(input: usize, output: usize) -> Vec<(usize, usize)> {
    (0..output)
        .map(|i| {
            let start = (i * input) / output;
            let end = ((i + 1) * input).div_ceil(output);
            (start, end.max(start + 1).min(input.max(1)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_of_the_downscale_is_the_downscale_there() {
        let (w, h) = (97, 61);
        let src: Vec<u8> = (0..w * h * 4).map(|i| ((i * 37 + i / 7) % 256) as u8).collect();
        let full = downscale_rgb(&src, w, h, 4, 40, 25);
        let (x0, y0, x1, y1) = (7, 3, 22, 19);
        let part = downscale_rgb_region(&src, (w, h, 4), (40, 25), (x0, y0, x1, y1));
        for y in 0..25 {
            for x in 0..40 {
                let i = (y * 40 + x) * 3;
                if (x0..x1).contains(&x) && (y0..y1).contains(&y) {
                    assert_eq!(part[i..i + 3], full[i..i + 3], "({x}, {y})");
                } else {
                    assert_eq!(part[i..i + 3], [0, 0, 0], "({x}, {y})");
                }
            }
        }
        assert!(downscale_rgb_region(&src, (w, h, 4), (40, 25), (30, 5, 10, 9)).iter().all(|&v| v == 0));
    }

    #[test]
    fn bins_match_adaptive_pooling() {
        assert_eq!(bins(5, 2), vec![(0, 3), (2, 5)]);
        assert_eq!(bins(4, 2), vec![(0, 2), (2, 4)]);
        // Upsampling repeats cells.
        assert_eq!(bins(2, 4), vec![(0, 1), (0, 1), (1, 2), (1, 2)]);
    }

    #[test]
    fn downscale_averages_blocks_of_any_channel_count() {
        // 4×2 image, left half 0 and right half 200, to 2×1; as gray, gray + alpha, RGB and RGBA.
        let values = [0u8, 0, 200, 200, 0, 0, 200, 200];
        for channels in 1..=4 {
            let src: Vec<u8> = values.iter().flat_map(|&v| vec![v; channels]).collect();
            assert_eq!(downscale_rgb(&src, 4, 2, channels, 2, 1), vec![0, 0, 0, 200, 200, 200], "{channels}");
        }
    }

    #[test]
    fn area_resize_averages_blocks() {
        // 4×2 image: left half 0, right half 200 (all channels); to 2×1.
        let rgb: Vec<u8> = [0u8, 0, 200, 200, 0, 0, 200, 200].iter().flat_map(|&v| [v, v, v]).collect();
        let frame = Frame::from_rgb(4, 2, rgb).unwrap();
        let mut out = Vec::new();
        resize_area_into(&frame, (0, 0, 4, 2), 2, 1, &mut out);
        let expect = [normalise(0.0), normalise(200.0)];
        assert_eq!(out.len(), 6);
        for ch in 0..3 {
            assert_eq!(&out[ch * 2..ch * 2 + 2], &expect);
        }
    }

    #[test]
    fn a_window_past_the_edge_is_padded_not_stretched() {
        // 2×1 image: 100 then 200. The window [-2, 2) × [0, 1) to 4×1: two cells of padding.
        let frame = Frame::from_rgb(2, 1, vec![100, 100, 100, 200, 200, 200]).unwrap();
        let plane = |padding| {
            let mut out = Vec::new();
            assert!(resize_area_padded_into(&frame, (-2, 0, 2, 1), 4, 1, padding, &mut out));
            out[..4].to_vec()
        };
        let n = |v: f32| normalise(v);
        assert_eq!(plane(Padding::Fill(0)), vec![n(0.0), n(0.0), n(100.0), n(200.0)]);
        assert_eq!(plane(Padding::Edge), vec![n(100.0), n(100.0), n(100.0), n(200.0)]);
        // Inside the frame it is the plain resize; outside it there is nothing to crop.
        let mut inside = Vec::new();
        assert!(resize_area_padded_into(&frame, (0, 0, 2, 1), 1, 1, Padding::Fill(0), &mut inside));
        assert_eq!(inside[0], n(150.0));
        assert!(!resize_area_padded_into(&frame, (2, 0, 4, 1), 1, 1, Padding::Fill(0), &mut inside));
        assert_eq!(inside.len(), 3);
    }

    #[test]
    fn planar_padding_surrounds_each_plane() {
        // One 1×1 pixel per plane, padded by 1: a 3×3 plane with the pixel in the middle.
        let padded = pad_planar(&[0.5, -0.5, 0.25], 1, 1, 1, Padding::Fill(128));
        assert_eq!(padded.len(), 27);
        for (ch, v) in [0.5, -0.5, 0.25].into_iter().enumerate() {
            let plane = &padded[ch * 9..ch * 9 + 9];
            assert_eq!(plane[4], v);
            assert!(plane.iter().enumerate().all(|(i, &p)| i == 4 || p == normalise(128.0)));
        }
        assert!(pad_planar(&[0.5, -0.5, 0.25], 1, 1, 2, Padding::Edge)
            .chunks(25)
            .zip([0.5, -0.5, 0.25])
            .all(|(p, v)| p.iter().all(|&x| x == v)));
    }
}
