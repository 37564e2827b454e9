//! The report plots (confusion matrices, learning curves) as PNG files: drawn by plotters into
//! an RGB buffer, saved by `image`. The text is DejaVu Sans, embedded in the binary (a subset,
//! `trainer/assets/fonts/`), so a plot looks the same on every machine and needs no system font.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

use crate::train::EpochStats;

/// DejaVu Sans cut to the characters plots use (ASCII, ±, ·, ×, é, –, —, −): 14 kB, not 740.
static FONT_BYTES: &[u8] = include_bytes!("../assets/fonts/DejaVuSans-subset.ttf");
const FONT: &str = "sans-serif";

const INK: RGBColor = RGBColor(29, 34, 48);
const GRID: RGBColor = RGBColor(154, 163, 181);
const TRAIN: RGBColor = RGBColor(47, 111, 237);
const VALIDATION: RGBColor = RGBColor(46, 158, 91);
const LOSS: RGBColor = RGBColor(192, 88, 43);

/// Registers the embedded font under [`FONT`] once per process.
fn font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok());
    anyhow::ensure!(ok, "the embedded plot font does not parse");
    Ok(())
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Draws a `width`×`height` picture with `draw` and writes it to `path` as PNG.
fn png(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, plotters::coord::Shift>) -> DrawResult,
) -> Result<()> {
    font()?;
    let mut pixels = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        draw(&root)
            .and_then(|()| root.present().map_err(Into::into))
            .map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
    }
    let img = image::RgbImage::from_raw(width, height, pixels).context("plot buffer size")?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    img.save(path).with_context(|| format!("writing {}", path.display()))
}

/// The colour of a confusion-matrix cell that holds `share` of its row: white to blue.
fn shade(share: f64) -> RGBColor {
    let s = |full: u8| (255.0 - share * (255.0 - full as f64)).round() as u8;
    RGBColor(s(TRAIN.0), s(TRAIN.1), s(TRAIN.2))
}

/// The confusion matrix as a heat map: rows = true label (top to bottom in `labels` order),
/// columns = predicted, shade = share of the row, the count written in each cell.
pub fn confusion_png(path: &Path, labels: &[String], counts: &[Vec<u64>]) -> Result<()> {
    let n = labels.len() as i32;
    let cell = 72u32;
    let size = (150 + cell * n as u32, 100 + cell * n as u32);
    png(path, size, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(118)
            // A segmented integer range holds one segment per value, its end included.
            .build_cartesian_2d((0..n - 1).into_segmented(), (0..n - 1).into_segmented())?;
        // Row r of the matrix is drawn at y = n-1-r, so the first label is at the top.
        let name = |v: &SegmentValue<i32>, flip: bool| match v {
            SegmentValue::CenterOf(i) => {
                let i = if flip { n - 1 - i } else { *i };
                labels.get(i as usize).cloned().unwrap_or_default()
            }
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(n as usize + 1)
            .y_labels(n as usize + 1)
            .x_label_formatter(&|v| name(v, false))
            .y_label_formatter(&|v| name(v, true))
            .x_desc("predicted")
            .y_desc("true")
            .label_style((FONT, 14).into_font().color(&INK))
            .axis_desc_style((FONT, 15).into_font().color(&INK))
            .axis_style(GRID)
            .draw()?;
        let cells = counts.iter().enumerate().flat_map(|(r, row)| {
            let sum: u64 = row.iter().sum();
            row.iter().enumerate().map(move |(c, &v)| (n - 1 - r as i32, c as i32, v, v as f64 / sum.max(1) as f64))
        });
        let cells: Vec<_> = cells.collect();
        chart.draw_series(cells.iter().map(|&(y, x, _, share)| {
            let corner = |d: i32| (SegmentValue::Exact(x + d), SegmentValue::Exact(y + d));
            Rectangle::new([corner(0), corner(1)], shade(share).filled())
        }))?;
        chart.draw_series(cells.iter().map(|&(y, x, v, share)| {
            let ink = if share > 0.55 { WHITE } else { INK };
            let style = (FONT, 16).into_font().color(&ink).pos(Pos::new(HPos::Center, VPos::Center));
            Text::new(v.to_string(), (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)), style)
        }))?;
        Ok(())
    })
}

/// Training accuracy, validation accuracy (left axis, %) and training loss (right axis) per
/// epoch.
///
/// `earlier` are the epochs of the model a fine-tuning run started from (empty for a run from
/// random weights): drawn first, with a vertical line where fine-tuning begins.
pub fn curves_png(path: &Path, earlier: &[EpochStats], history: &[EpochStats]) -> Result<()> {
    let all: Vec<&EpochStats> = earlier.iter().chain(history).collect();
    let last = all.len().max(2) as f64;
    let max_loss = all.iter().map(|e| e.train_loss).fold(1e-9, f64::max) * 1.05;
    png(path, (720, 380), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(52)
            .right_y_label_area_size(56)
            .build_cartesian_2d(1.0..last, 0.0..100.0)?
            .set_secondary_coord(1.0..last, 0.0..max_loss);
        let text = (FONT, 14).into_font().color(&INK);
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("accuracy (%)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .label_style(text.clone())
            .axis_desc_style(text.clone())
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(232, 235, 241))
            .draw()?;
        chart
            .configure_secondary_axes()
            .y_desc("training loss")
            .label_style(text.clone())
            .axis_desc_style(text.clone())
            .draw()?;
        let at = |i: usize| (i + 1) as f64;
        let legend = |color: RGBColor| move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2));
        chart
            .draw_series(LineSeries::new(
                all.iter().enumerate().map(|(i, e)| (at(i), 100.0 * e.train_accuracy)),
                TRAIN.stroke_width(2),
            ))?
            .label("training accuracy")
            .legend(legend(TRAIN));
        chart
            .draw_series(LineSeries::new(
                all.iter().enumerate().filter_map(|(i, e)| Some((at(i), 100.0 * e.val_accuracy?))),
                VALIDATION.stroke_width(2),
            ))?
            .label("validation accuracy")
            .legend(legend(VALIDATION));
        chart
            .draw_secondary_series(LineSeries::new(
                all.iter().enumerate().map(|(i, e)| (at(i), e.train_loss)),
                LOSS.stroke_width(2),
            ))?
            .label("training loss (right axis)")
            .legend(legend(LOSS));
        if !earlier.is_empty() {
            let x = earlier.len() as f64 + 0.5;
            chart.draw_series(std::iter::once(PathElement::new(vec![(x, 0.0), (x, 100.0)], GRID.stroke_width(1))))?;
            chart.draw_series(std::iter::once(Text::new("fine-tuning", (x, 97.0), text.clone())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(text)
            .background_style(WHITE.mix(0.85))
            .border_style(GRID)
            .draw()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(img: &image::RgbImage, color: RGBColor) -> usize {
        img.pixels().filter(|p| p.0 == [color.0, color.1, color.2]).count()
    }

    #[test]
    fn confusion_heat_map_shades_by_row_share_and_names_every_class() {
        let dir = std::env::temp_dir().join(format!("mien-plot-{}", std::process::id()));
        let path = dir.join("m.png");
        let labels = ["happiness".to_string(), "sadness".into(), "surprise".into()];
        confusion_png(&path, &labels, &[vec![9, 1, 0], vec![0, 0, 0], vec![2, 2, 4]]).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(img.dimensions(), (150 + 3 * 72, 100 + 3 * 72));
        // Each cell's colour is its share of the row; most of a 72 px cell is background, not digits.
        for share in [0.9, 0.1, 0.5, 0.25] {
            assert!(count(&img, shade(share)) > 2000, "share {share}: {} pixels", count(&img, shade(share)));
        }
        // The labels and counts are text: dark pixels that no cell colour has.
        let ink = img.pixels().filter(|p| p.0.iter().all(|&c| c < 90)).count();
        assert!(ink > 500, "{ink} dark pixels");
    }

    #[test]
    fn learning_curves_draw_every_series() {
        let dir = std::env::temp_dir().join(format!("mien-curves-{}", std::process::id()));
        let path = dir.join("c.png");
        let epoch = |i: usize| EpochStats {
            epoch: i,
            train_loss: 2.0 / i as f64,
            train_accuracy: 0.3 + 0.05 * i as f64,
            val_accuracy: Some(0.25 + 0.04 * i as f64),
            images_per_second: 100.0,
            seconds: 1.0,
            device: None,
        };
        let earlier: Vec<EpochStats> = (1..4).map(epoch).collect();
        let history: Vec<EpochStats> = (1..8).map(epoch).collect();
        curves_png(&path, &earlier, &history).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        std::fs::remove_dir_all(&dir).ok();
        for color in [TRAIN, VALIDATION, LOSS] {
            assert!(count(&img, color) > 300, "{color:?}: {} pixels", count(&img, color));
        }
    }
}
