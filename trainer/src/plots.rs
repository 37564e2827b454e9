//! PNG plots of a report — the confusion matrix as a heat map with its counts, and learning
//! curves — drawn with the `image` crate and a built-in 3×5 pixel font, so the trainer needs no
//! plotting library or system fonts.

use std::path::Path;

use anyhow::{Context, Result};
use image::{Rgb, RgbImage};

use crate::train::EpochStats;

/// 3×5 glyphs, one row per string, '#' = ink.
fn glyph(c: char) -> [&'static str; 5] {
    match c.to_ascii_uppercase() {
        '0' => ["###", "#.#", "#.#", "#.#", "###"],
        '1' => [".#.", "##.", ".#.", ".#.", "###"],
        '2' => ["###", "..#", "###", "#..", "###"],
        '3' => ["###", "..#", ".##", "..#", "###"],
        '4' => ["#.#", "#.#", "###", "..#", "..#"],
        '5' => ["###", "#..", "###", "..#", "###"],
        '6' => ["###", "#..", "###", "#.#", "###"],
        '7' => ["###", "..#", ".#.", ".#.", ".#."],
        '8' => ["###", "#.#", "###", "#.#", "###"],
        '9' => ["###", "#.#", "###", "..#", "###"],
        '.' => ["...", "...", "...", "...", ".#."],
        '%' => ["#.#", "..#", ".#.", "#..", "#.#"],
        '-' => ["...", "...", "###", "...", "..."],
        'A' => [".#.", "#.#", "###", "#.#", "#.#"],
        'B' => ["##.", "#.#", "##.", "#.#", "##."],
        'C' => [".##", "#..", "#..", "#..", ".##"],
        'D' => ["##.", "#.#", "#.#", "#.#", "##."],
        'E' => ["###", "#..", "##.", "#..", "###"],
        'F' => ["###", "#..", "##.", "#..", "#.."],
        'G' => [".##", "#..", "#.#", "#.#", ".##"],
        'H' => ["#.#", "#.#", "###", "#.#", "#.#"],
        'I' => ["###", ".#.", ".#.", ".#.", "###"],
        'L' => ["#..", "#..", "#..", "#..", "###"],
        'M' => ["#.#", "###", "###", "#.#", "#.#"],
        'N' => ["##.", "#.#", "#.#", "#.#", "#.#"],
        'O' => [".#.", "#.#", "#.#", "#.#", ".#."],
        'P' => ["##.", "#.#", "##.", "#..", "#.."],
        'R' => ["##.", "#.#", "##.", "#.#", "#.#"],
        'S' => [".##", "#..", ".#.", "..#", "##."],
        'T' => ["###", ".#.", ".#.", ".#.", ".#."],
        'U' => ["#.#", "#.#", "#.#", "#.#", "###"],
        'V' => ["#.#", "#.#", "#.#", "#.#", ".#."],
        'W' => ["#.#", "#.#", "###", "###", "#.#"],
        'Y' => ["#.#", "#.#", ".#.", ".#.", ".#."],
        'K' => ["#.#", "##.", "#..", "##.", "#.#"],
        'Q' => [".#.", "#.#", "#.#", "##.", ".##"],
        'X' => ["#.#", "#.#", ".#.", "#.#", "#.#"],
        'Z' => ["###", "..#", ".#.", "#..", "###"],
        'J' => ["..#", "..#", "..#", "#.#", ".#."],
        _ => ["...", "...", "...", "...", "..."],
    }
}

/// Draws `text` with its top-left corner at (x, y), each font pixel `scale`×`scale`.
fn text(img: &mut RgbImage, x: u32, y: u32, s: &str, scale: u32, color: Rgb<u8>) {
    for (i, c) in s.chars().enumerate() {
        for (row, bits) in glyph(c).iter().enumerate() {
            for (col, b) in bits.bytes().enumerate() {
                if b != b'#' {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let px = x + (i as u32 * 4 + col as u32) * scale + dx;
                        let py = y + row as u32 * scale + dy;
                        if px < img.width() && py < img.height() {
                            img.put_pixel(px, py, color);
                        }
                    }
                }
            }
        }
    }
}

fn text_width(s: &str, scale: u32) -> u32 {
    (s.chars().count() as u32 * 4).saturating_sub(1) * scale
}

fn save(img: &RgbImage, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    img.save(path).with_context(|| format!("writing {}", path.display()))
}

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([29, 34, 48]);

/// The confusion matrix as a heat map: rows = true label, columns = predicted, shade = share of
/// the row, the count written in each cell.
pub fn confusion_png(path: &Path, labels: &[String], counts: &[Vec<u64>]) -> Result<()> {
    let n = labels.len();
    let (cell, scale, margin) = (56u32, 2u32, 90u32);
    let mut img = RgbImage::from_pixel(margin + cell * n as u32 + 10, margin + cell * n as u32 + 10, WHITE);
    for (i, l) in labels.iter().enumerate() {
        let short: String = l.chars().take(5).collect();
        text(&mut img, 6, margin + i as u32 * cell + cell / 2 - 5, &short, scale, INK);
        let w = text_width(&short, scale);
        text(&mut img, margin + i as u32 * cell + (cell.saturating_sub(w)) / 2, margin - 20, &short, scale, INK);
    }
    text(&mut img, margin, 8, "PREDICTED", scale, INK);
    text(&mut img, 6, margin - 40, "TRUE", scale, INK);
    for (r, row) in counts.iter().enumerate() {
        let sum: u64 = row.iter().sum();
        for (c, &v) in row.iter().enumerate() {
            let share = if sum == 0 { 0.0 } else { v as f64 / sum as f64 };
            let shade = |full: u8| (255.0 - share * (255.0 - full as f64)).round() as u8;
            let color = Rgb([shade(47), shade(111), shade(237)]);
            let (x0, y0) = (margin + c as u32 * cell, margin + r as u32 * cell);
            for y in y0 + 1..y0 + cell - 1 {
                for x in x0 + 1..x0 + cell - 1 {
                    img.put_pixel(x, y, color);
                }
            }
            let s = v.to_string();
            let ink = if share > 0.55 { WHITE } else { INK };
            text(&mut img, x0 + (cell.saturating_sub(text_width(&s, scale))) / 2, y0 + cell / 2 - 5, &s, scale, ink);
        }
    }
    save(&img, path)
}

/// Train accuracy (blue), validation accuracy (green) and train loss (orange, scaled to its
/// maximum) per epoch.
///
/// `earlier` are the epochs of the model a fine-tuning run started from (empty for a run from
/// random weights): drawn first, with a vertical line where fine-tuning begins.
pub fn curves_png(path: &Path, earlier: &[EpochStats], history: &[EpochStats]) -> Result<()> {
    let history: Vec<EpochStats> = earlier.iter().chain(history).cloned().collect();
    let (w, h, pad) = (640u32, 320u32, 40u32);
    let mut img = RgbImage::from_pixel(w, h, WHITE);
    let axis = Rgb([154, 163, 181]);
    for x in pad..w - pad {
        img.put_pixel(x, h - pad, axis);
    }
    for y in pad..h - pad {
        img.put_pixel(pad, y, axis);
    }
    let n = history.len().max(2);
    let max_loss = history.iter().map(|e| e.train_loss).fold(1e-9, f64::max);
    let point = |i: usize, v: f64| -> (f64, f64) {
        let x = pad as f64 + (w - 2 * pad) as f64 * i as f64 / (n - 1) as f64;
        let y = (h - pad) as f64 - (h - 2 * pad) as f64 * v.clamp(0.0, 1.0);
        (x, y)
    };
    let series: [(Rgb<u8>, Vec<Option<f64>>); 3] = [
        (Rgb([47, 111, 237]), history.iter().map(|e| Some(e.train_accuracy)).collect()),
        (Rgb([46, 158, 91]), history.iter().map(|e| e.val_accuracy).collect()),
        (Rgb([192, 88, 43]), history.iter().map(|e| Some(e.train_loss / max_loss)).collect()),
    ];
    for (color, values) in &series {
        for i in 1..values.len() {
            if let (Some(a), Some(b)) = (values[i - 1], values[i]) {
                let (p, q) = (point(i - 1, a), point(i, b));
                let steps = ((q.0 - p.0).abs().max((q.1 - p.1).abs()) as usize).max(1);
                for s in 0..=steps {
                    let t = s as f64 / steps as f64;
                    let (x, y) = (p.0 + (q.0 - p.0) * t, p.1 + (q.1 - p.1) * t);
                    for d in 0..2 {
                        let (px, py) = (x as u32 + d, y as u32);
                        if px < w && py < h {
                            img.put_pixel(px, py, *color);
                        }
                    }
                }
            }
        }
    }
    if !earlier.is_empty() {
        let x = point(earlier.len() - 1, 0.0).0.round() as u32;
        for y in (pad..h - pad).filter(|y| y % 6 < 3) {
            img.put_pixel(x, y, axis);
        }
        let label = "FINE-TUNING";
        let lw = text_width(label, 2);
        let lx = if x + 4 + lw <= w { x + 4 } else { x.saturating_sub(lw + 4) };
        text(&mut img, lx, pad + 4, label, 2, axis);
    }
    text(&mut img, pad, 10, "ACCURACY 0-100%", 2, INK);
    text(&mut img, w - pad - text_width("EPOCH", 2), h - 22, "EPOCH", 2, INK);
    text(&mut img, pad + 200, 10, "TRAIN", 2, series[0].0);
    text(&mut img, pad + 260, 10, "VAL", 2, series[1].0);
    text(&mut img, pad + 300, 10, "LOSS", 2, series[2].0);
    save(&img, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_heat_map_shades_by_row_share() {
        let dir = std::env::temp_dir().join(format!("mien-plot-{}", std::process::id()));
        let path = dir.join("m.png");
        confusion_png(&path, &["happiness".into(), "sadness".into()], &[vec![9, 1], vec![0, 0]]).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        std::fs::remove_dir_all(&dir).ok();
        // Cell (0,0) holds 90% of its row: dark; cell (1,1) an empty row: white. Sample a corner
        // of each cell, away from the digits.
        let dark = img.get_pixel(90 + 3, 90 + 3);
        let empty = img.get_pixel(90 + 56 + 3, 90 + 56 + 3);
        assert!(dark[0] < 100 && dark[2] > 200, "{dark:?}");
        assert_eq!(*empty, WHITE);
    }
}
