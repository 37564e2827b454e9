//! MTCNN on burn against the reference: the networks' outputs match golden values to 1e-4, and the
//! whole cascade finds on real photos what facenet-pytorch finds.

mod common;

use burn::prelude::*;
use common::*;
use mien::{DetectorConfig, FaceDetector, Frame, MtcnnWeights, WeightsError};
use serde_json::Value;

/// The golden outputs' synthetic input: `pixel[c][h][w] = (31c + 17h + 7w + 11hw) mod 256`.
fn synthetic(h: usize, w: usize) -> Tensor<4> {
    let mut v = Vec::with_capacity(3 * h * w);
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let p = (31 * c + 17 * y + 7 * x + 11 * y * x) % 256;
                v.push((p as f32 - 127.5) * 0.0078125);
            }
        }
    }
    Tensor::from_data(TensorData::new(v, [1, 3, h, w]), &Device::flex())
}

fn flat(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(a) => a.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap() as f32],
        _ => panic!("unexpected {v}"),
    }
}

fn assert_close(name: &str, got: Tensor<2>, want: &Value) {
    let got: Vec<f32> = got.into_data().convert::<f32>().try_into_vec().unwrap();
    let want = flat(want);
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-4, "{name}[{i}]: got {g}, want {w}");
    }
}

#[test]
fn networks_match_golden_outputs() {
    let golden = read_json(&repo().join("assets/mtcnn/golden_outputs.json"));
    let det = detector();

    let (reg, prob) = det.pnet().forward(synthetic(16, 22));
    assert_eq!(prob.dims(), [1, 2, 3, 6]);
    let g = &golden["pnet_16x22"];
    assert_close("pnet reg", reg.reshape([1, -1]), &g["reg_chw"]);
    assert_close("pnet prob", prob.narrow(1, 1, 1).reshape([1, -1]), &g["prob_face_hw"]);

    let (reg, prob) = det.rnet().forward(synthetic(24, 24));
    let g = &golden["rnet_24x24"];
    assert_close("rnet reg", reg, &g["reg"]);
    assert_close("rnet prob", prob, &g["prob"]);

    let (reg, marks, prob) = det.onet().forward(synthetic(48, 48));
    let g = &golden["onet_48x48"];
    assert_close("onet reg", reg, &g["reg"]);
    assert_close("onet landmarks", marks, &g["landmarks"]);
    assert_close("onet prob", prob, &g["prob"]);
}

#[test]
fn finds_every_reference_face_and_nothing_on_faceless_photos() {
    let reference = read_json(&fixture("reference_mtcnn_detections.json"));
    let det = detector();
    let mut checked = 0;
    for (path, entry) in reference["images"].as_object().unwrap() {
        let file = fixture(path.trim_start_matches("fixtures/"));
        let frame = Frame::decode(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(frame.width() as u64, entry["width"].as_u64().unwrap(), "{path}");
        let faces = det.detect(&frame).unwrap();
        let expected: Vec<&Value> =
            entry["detections"].as_array().unwrap().iter().filter(|d| d["prob"].as_f64().unwrap() >= 0.9).collect();
        if path.contains("no_faces") {
            assert!(faces.is_empty(), "{path}: found {faces:?} on a photo without faces");
        }
        for want in expected {
            let wb: Vec<f32> = flat(&want["box"]);
            let wb = [wb[0], wb[1], wb[2], wb[3]];
            let best = faces
                .iter()
                .max_by(|a, b| iou(a.bbox, wb).total_cmp(&iou(b.bbox, wb)))
                .unwrap_or_else(|| panic!("{path}: no face found, reference has {wb:?}"));
            let overlap = iou(best.bbox, wb);
            assert!(overlap >= 0.8, "{path}: best IoU {overlap} for reference {wb:?}, got {:?}", best.bbox);
            assert!(best.score >= 0.9, "{path}: score {}", best.score);
            let size = (wb[2] - wb[0]).max(wb[3] - wb[1]);
            let marks = flat(&want["landmarks"]);
            for (k, lm) in best.landmarks.iter().enumerate() {
                let d = ((lm[0] - marks[2 * k]).powi(2) + (lm[1] - marks[2 * k + 1]).powi(2)).sqrt();
                assert!(d <= 0.05 * size, "{path}: landmark {k} off by {d:.1} px (box {size:.0} px)");
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} reference faces checked");
}

#[test]
fn bad_weight_files_are_named_errors() {
    let good = mtcnn_weights();
    let device = Device::flex();
    let config = DetectorConfig::default();

    let mut truncated = good.clone();
    truncated.rnet.truncate(truncated.rnet.len() / 2);
    match FaceDetector::new(&truncated, config.clone(), &device) {
        Err(e @ WeightsError::Corrupt { .. }) => {
            assert!(e.to_string().contains("rnet.safetensors"), "{e}")
        }
        other => panic!("truncated: {other:?}"),
    }

    let swapped = MtcnnWeights { pnet: good.onet.clone(), ..good.clone() };
    match FaceDetector::new(&swapped, config.clone(), &device) {
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("pnet.safetensors") && msg.contains("conv"), "{msg}");
        }
        Ok(_) => panic!("O-Net weights accepted as P-Net"),
    }

    let empty = MtcnnWeights { onet: Vec::new(), ..good };
    assert!(matches!(FaceDetector::new(&empty, config, &device), Err(WeightsError::Corrupt { .. })));
}

/// Every frame shape a decoder can hand over, exhaustively where fuzzing is too slow to go (the
/// instrumented cascade runs a few executions a second): each size from 1×1 to 40×40, thin
/// strips, flat black and white, and the face fixture squeezed into each of them. Nothing panics,
/// and every face found lies in the frame with finite numbers.
#[test]
fn every_small_frame_shape_is_handled() {
    let det = detector();
    let face = image::open(fixture("faces/grace_hopper.jpg")).unwrap();
    let mut shapes: Vec<(u32, u32)> = (1..=40).flat_map(|w| (1..=40).map(move |h| (w, h))).collect();
    shapes.extend([(1, 2000), (2000, 1), (12, 1500), (1500, 12), (13, 13), (2, 700)]);
    let mut found = 0;
    for (i, &(w, h)) in shapes.iter().enumerate() {
        let frame = match i % 3 {
            0 => Frame::from_rgb(w, h, vec![0; (w * h * 3) as usize]).unwrap(),
            1 => Frame::from_rgb(w, h, vec![255; (w * h * 3) as usize]).unwrap(),
            _ => Frame::from_dynamic(&face.resize_exact(w, h, image::imageops::FilterType::Triangle)),
        };
        let faces = det.detect(&frame).unwrap_or_else(|e| panic!("{w}×{h}: {e}"));
        for f in &faces {
            let [x1, y1, x2, y2] = f.bbox;
            assert!(f.bbox.iter().chain(f.landmarks.iter().flatten()).all(|v| v.is_finite()), "{w}×{h}: {f:?}");
            assert!(x1 < x2 && y1 < y2 && x2 > 0.0 && y2 > 0.0 && x1 < w as f32 && y1 < h as f32, "{w}×{h}: {f:?}");
            let crop = mien::crop_face(&frame, f, &mien::CropConfig::default());
            assert_eq!(crop.pixels.len(), 48 * 48);
        }
        found += faces.len();
    }
    // The face is findable once the frame is big enough: the sweep reaches the whole cascade.
    assert!(found > 0, "no face in any of {} frames", shapes.len());
    eprintln!("{} frame shapes, {found} faces found", shapes.len());
}
