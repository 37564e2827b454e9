//! Box arithmetic of the MTCNN cascade: non-maximum suppression, regression, squaring and the
//! integer crop window. The conventions (where a `+1` goes, which NMS uses which overlap) follow
//! facenet-pytorch 2.6.0 exactly, because the pretrained weights were tuned inside that pipeline.

/// A candidate box in pixel coordinates of the original image, with its face score and the
/// regression offsets the network proposed for it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Candidate {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub score: f32,
    /// `[dx1, dy1, dx2, dy2]`, in units of the box width/height.
    pub reg: [f32; 4],
    /// Whether the candidate fell below a stage's threshold and goes on as one of the few best
    /// of the second look ([`super::DetectorConfig::second_look`]).
    pub rescued: bool,
}

impl Candidate {
    /// A box `[x1, y1, x2, y2]` with its score, as a candidate of no stage.
    pub fn of_box([x1, y1, x2, y2]: [f32; 4], score: f32) -> Candidate {
        Candidate { x1, y1, x2, y2, score, reg: [0.0; 4], rescued: false }
    }
}

/// How overlap is measured in [`nms`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Intersection over union, areas without the +1 pixel (torchvision's `nms`).
    Union,
    /// Intersection over the smaller area, with the +1 pixel convention (the numpy "Min" NMS
    /// of the final stage).
    Min,
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes (0 for disjoint or degenerate boxes).
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Greedy non-maximum suppression: returns the indices kept, best score first. A box is dropped
/// when its overlap with a kept box is above `threshold`.
pub fn nms(boxes: &[Candidate], threshold: f32, overlap: Overlap) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    // Stable sort by descending score, so ties keep a deterministic order.
    order.sort_by(|&a, &b| boxes[b].score.total_cmp(&boxes[a].score));
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (pos, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        for &j in &order[pos + 1..] {
            if !suppressed[j] && overlap_of(&boxes[i], &boxes[j], overlap) > threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// How much two candidates overlap, measured as [`nms`] measures it.
pub fn overlap_of(a: &Candidate, b: &Candidate, overlap: Overlap) -> f32 {
    let plus = if overlap == Overlap::Min { 1.0 } else { 0.0 };
    let area = |b: &Candidate| (b.x2 - b.x1 + plus) * (b.y2 - b.y1 + plus);
    let w = (a.x2.min(b.x2) - a.x1.max(b.x1) + plus).max(0.0);
    let h = (a.y2.min(b.y2) - a.y1.max(b.y1) + plus).max(0.0);
    let inter = w * h;
    match overlap {
        Overlap::Union => inter / (area(a) + area(b) - inter),
        Overlap::Min => inter / area(a).min(area(b)),
    }
}

/// Applies the regression offsets. `plus_one` is false in the first stage and true in the R/O
/// stages, as in the reference.
pub fn regress(c: &Candidate, reg: [f32; 4], plus_one: bool) -> Candidate {
    let p = if plus_one { 1.0 } else { 0.0 };
    let w = c.x2 - c.x1 + p;
    let h = c.y2 - c.y1 + p;
    Candidate { x1: c.x1 + reg[0] * w, y1: c.y1 + reg[1] * h, x2: c.x2 + reg[2] * w, y2: c.y2 + reg[3] * h, ..*c }
}

/// Makes a box square (side = the longer side) about its centre.
pub fn square(c: &Candidate) -> Candidate {
    let w = c.x2 - c.x1;
    let h = c.y2 - c.y1;
    let l = w.max(h);
    let x1 = c.x1 + w * 0.5 - l * 0.5;
    let y1 = c.y1 + h * 0.5 - l * 0.5;
    Candidate { x1, y1, x2: x1 + l, y2: y1 + l, ..*c }
}

/// The integer window `[x0, x1) × [y0, y1)` that the reference crops for the next stage
/// (`img[y-1:ey, x-1:ex]` after truncation and clamping to `[1, w] × [1, h]`), or `None` when it
/// is empty.
pub fn crop_window(c: &Candidate, width: u32, height: u32) -> Option<(usize, usize, usize, usize)> {
    let x = (c.x1.trunc() as i64).max(1);
    let y = (c.y1.trunc() as i64).max(1);
    let ex = (c.x2.trunc() as i64).min(width as i64);
    let ey = (c.y2.trunc() as i64).min(height as i64);
    if ex > x - 1 && ey > y - 1 {
        Some(((x - 1) as usize, (y - 1) as usize, ex as usize, ey as usize))
    } else {
        None
    }
}

/// The same window as [`crop_window`] without the clamping: it may reach past the frame, for a
/// crop whose outside is padded.
pub fn padded_window(c: &Candidate) -> (i64, i64, i64, i64) {
    (c.x1.trunc() as i64 - 1, c.y1.trunc() as i64 - 1, c.x2.trunc() as i64, c.y2.trunc() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(x1: f32, y1: f32, x2: f32, y2: f32, score: f32) -> Candidate {
        Candidate { x1, y1, x2, y2, score, reg: [0.0; 4], rescued: false }
    }

    #[test]
    fn nms_keeps_best_of_overlapping_and_all_disjoint() {
        let boxes =
            [cand(0.0, 0.0, 10.0, 10.0, 0.8), cand(1.0, 1.0, 11.0, 11.0, 0.9), cand(50.0, 50.0, 60.0, 60.0, 0.7)];
        assert_eq!(nms(&boxes, 0.5, Overlap::Union), vec![1, 2]);
        // IoU of the first two is 81/119 = 0.68: kept apart at a 0.7 threshold.
        assert_eq!(nms(&boxes, 0.7, Overlap::Union), vec![1, 0, 2]);
    }

    #[test]
    fn min_overlap_suppresses_a_box_inside_another() {
        let boxes = [cand(0.0, 0.0, 100.0, 100.0, 0.9), cand(10.0, 10.0, 30.0, 30.0, 0.95)];
        assert_eq!(nms(&boxes, 0.7, Overlap::Union), vec![1, 0]);
        assert_eq!(nms(&boxes, 0.7, Overlap::Min), vec![1]);
    }

    #[test]
    fn square_keeps_centre_and_takes_longer_side() {
        let s = square(&cand(10.0, 20.0, 30.0, 60.0, 1.0));
        assert_eq!((s.x1, s.y1, s.x2, s.y2), (0.0, 20.0, 40.0, 60.0));
    }

    #[test]
    fn crop_window_clamps_to_the_image() {
        assert_eq!(crop_window(&cand(-5.0, 3.7, 120.2, 50.0, 1.0), 100, 80), Some((0, 2, 100, 50)));
        assert_eq!(crop_window(&cand(200.0, 3.0, 220.0, 50.0, 1.0), 100, 80), None);
    }
}
