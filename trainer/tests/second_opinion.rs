//! The detector's close look with its second opinion (`mien::DetectorConfig::close_look`), on the
//! fixture photos: faces cut as a dataset cuts them (tight, grey, small), their mouths covered,
//! that the cascade alone misses are found, and no face is raised where there is none.

use mien::{DetectorConfig, Face, FaceDetector, Frame};
use mien_trainer::augment::SplitMix64;
use mien_trainer::detect::{detector, faceless_frames};

fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    mien::detect::boxes::iou(a, b)
}

/// Each reference face of the fixtures (probability ≥ 0.9, at least 40 pixels) as a dataset image
/// of it would be, with its mouth covered (a hand, a scarf): a grey square of `fill` of its box's
/// side about the box's centre, resized to 48×48, its lower 38 % a light flat block; with the
/// face's box in the image's pixels.
fn covered_dataset_faces(fill: f32) -> Vec<(String, Frame, [f32; 4])> {
    const SIDE: u32 = 48;
    let root = mien_trainer::repo_root().join("tests");
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("fixtures/reference_mtcnn_detections.json")).unwrap()).unwrap();
    let mut out = Vec::new();
    for (path, entry) in reference["images"].as_object().unwrap() {
        let img = image::open(root.join(path)).unwrap().to_luma8();
        for d in entry["detections"].as_array().unwrap() {
            let b: Vec<f32> = d["box"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
            let size = (b[2] - b[0]).max(b[3] - b[1]);
            if d["prob"].as_f64().unwrap() < 0.9 || size < 40.0 {
                continue;
            }
            let n = (size * fill).round() as u32;
            let (x0, y0) =
                (((b[0] + b[2]) / 2.0 - n as f32 / 2.0).round(), ((b[1] + b[3]) / 2.0 - n as f32 / 2.0).round());
            if x0 < 0.0 || y0 < 0.0 || x0 as u32 + n > img.width() || y0 as u32 + n > img.height() {
                continue;
            }
            let cut = image::imageops::crop_imm(&img, x0 as u32, y0 as u32, n, n).to_image();
            let mut cut = image::imageops::resize(&cut, SIDE, SIDE, image::imageops::FilterType::Triangle);
            for y in (0.62 * SIDE as f32) as u32..SIDE {
                for x in 0..SIDE {
                    cut.put_pixel(x, y, image::Luma([200]));
                }
            }
            let k = SIDE as f32 / n as f32;
            let face = [(b[0] - x0) * k, (b[1] - y0) * k, (b[2] - x0) * k, (b[3] - y0) * k];
            out.push((
                format!("{path} at {fill} of its box"),
                Frame::from_gray(SIDE, SIDE, cut.as_raw()).unwrap(),
                face,
            ));
        }
    }
    out
}

fn found(det: &FaceDetector, frames: &[(String, Frame, [f32; 4])]) -> Vec<String> {
    frames
        .iter()
        .filter(|(_, frame, want)| det.detect(frame).unwrap().iter().any(|f: &Face| iou(f.bbox, *want) >= 0.4))
        .map(|(name, _, _)| name.clone())
        .collect()
}

#[test]
fn the_close_look_finds_covered_faces_the_cascade_misses_and_nothing_where_none_is() {
    let with = detector(20.0).unwrap();
    assert!(with.has_second_opinion());
    let mut without = with.clone();
    without.set_config(DetectorConfig { close_look: None, ..with.config().clone() });

    let mut frames = Vec::new();
    for fill in [0.8, 0.9, 1.0] {
        frames.extend(covered_dataset_faces(fill));
    }
    assert!(frames.len() >= 30, "only {} faces", frames.len());
    let (by_cascade, by_both) = (found(&without, &frames), found(&with, &frames));
    eprintln!(
        "{} covered faces: the cascade finds {}, with the close look {}; missed with it: {:?}",
        frames.len(),
        by_cascade.len(),
        by_both.len(),
        frames.iter().map(|f| &f.0).filter(|n| !by_both.contains(n)).collect::<Vec<_>>()
    );
    assert!(by_cascade.iter().all(|n| by_both.contains(n)), "the close look runs only where the cascade found nothing");
    assert!(by_both.len() > by_cascade.len(), "the close look found no face the cascade missed");

    // The cascade itself raises two faces there (a collar among them); the close look adds none.
    let negatives = faceless_frames(&mut SplitMix64::new(3)).unwrap();
    let mut raised = 0;
    for (i, frame) in negatives.iter().enumerate() {
        let (a, b) = (without.detect(frame).unwrap(), with.detect(frame).unwrap());
        assert_eq!(a, b, "faceless frame {i}: the close look raised {b:?}");
        raised += a.len();
    }
    assert!(raised <= 2, "the cascade raised {raised} faces on the faceless frames");
}
