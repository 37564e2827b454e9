//! Photos of any size: a photo scaled up ×4 and ×8 gives the faces of the original (in its own,
//! larger pixels), the largest accepted photo is answered, and the EXIF rotation is applied to the
//! working frame as to a full decode. The large photos are made here from the fixtures, at test
//! time, so no large file is committed.

mod common;

use common::*;
use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::{DynamicImage, ImageEncoder, RgbImage};
use mien::pipeline::analyze_photo;
use mien::{DetectorConfig, Frame, Photo};
use serde_json::Value;

/// The fixture scaled by `factor` and encoded as a JPEG (quality 90), as a phone would save it.
fn scaled_jpeg(file: &str, factor: u32) -> Vec<u8> {
    let img = image::open(fixture(file)).unwrap().to_rgb8();
    let big = image::imageops::resize(&img, img.width() * factor, img.height() * factor, FilterType::Triangle);
    jpeg(&big)
}

fn jpeg(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90).encode_image(img).unwrap();
    out
}

fn faces_of(photo: &Photo) -> Vec<mien::Face> {
    let det = detector();
    let config = DetectorConfig::default();
    pollster::block_on(analyze_photo(&det, None, photo, &config)).unwrap().into_iter().map(|f| f.face).collect()
}

/// The reference detections (facenet-pytorch, probability ≥ 0.9) of a fixture, scaled.
fn reference_boxes(path: &str, factor: f32) -> Vec<[f32; 4]> {
    let reference = read_json(&fixture("reference_mtcnn_detections.json"));
    let entry: &Value = &reference["images"][path];
    entry["detections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["prob"].as_f64().unwrap() >= 0.9)
        .map(|d| {
            let b: Vec<f32> =
                d["box"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32 * factor).collect();
            [b[0], b[1], b[2], b[3]]
        })
        .collect()
}

#[test]
fn a_photo_scaled_up_has_the_faces_of_the_original() {
    let config = DetectorConfig::default();
    for file in ["apollo11_crew.jpg", "obama_biden_two_people.jpg", "grace_hopper.jpg"] {
        let want_small = reference_boxes(&format!("fixtures/faces/{file}"), 1.0);
        assert!(!want_small.is_empty(), "{file}");
        for factor in [4u32, 8] {
            let bytes = scaled_jpeg(&format!("faces/{file}"), factor);
            let photo = Frame::decode_photo(&bytes, Some(config.photo_short_side())).unwrap();
            let short = photo.frame.width().min(photo.frame.height());
            assert!(short <= config.photo_short_side(), "{file} ×{factor}: working frame {short} px");
            let faces = faces_of(&photo);
            for want in reference_boxes(&format!("fixtures/faces/{file}"), factor as f32) {
                let best = faces.iter().map(|f| iou(f.bbox, want)).fold(0f32, f32::max);
                assert!(
                    best >= 0.8,
                    "{file} ×{factor}: best IoU {best:.3} for the reference face {want:?}; found {faces:?}"
                );
            }
            let confident = faces.iter().filter(|f| f.score >= 0.9).count();
            assert_eq!(confident, want_small.len(), "{file} ×{factor}: {faces:?}");
            eprintln!(
                "{file} ×{factor}: {}×{} photo, working frame {}×{}, {} face(s)",
                photo.width,
                photo.height,
                photo.frame.width(),
                photo.frame.height(),
                faces.len()
            );
        }
    }
}

#[test]
fn the_largest_accepted_photo_is_answered() {
    // grace_hopper (512×600) stretched to 12000×12000: the face is where the reference puts it,
    // stretched likewise.
    let img = image::open(fixture("faces/grace_hopper.jpg")).unwrap().to_rgb8();
    let max = mien::frame::MAX_DIMENSION;
    let big = image::imageops::resize(&img, max, max, FilterType::Triangle);
    drop(img);
    let bytes = jpeg(&big);
    drop(big);
    let config = DetectorConfig::default();
    let photo = Frame::decode_photo(&bytes, Some(config.photo_short_side())).unwrap();
    assert_eq!((photo.width, photo.height), (max, max));
    let faces = faces_of(&photo);
    let (sx, sy) = (max as f32 / 512.0, max as f32 / 600.0);
    let [x1, y1, x2, y2] = reference_boxes("fixtures/faces/grace_hopper.jpg", 1.0)[0];
    let want = [x1 * sx, y1 * sy, x2 * sx, y2 * sy];
    let best = faces.iter().map(|f| iou(f.bbox, want)).fold(0f32, f32::max);
    assert!(best >= 0.6, "best IoU {best:.3} for {want:?}; found {faces:?}");
}

#[test]
fn exif_rotation_is_applied_to_the_working_frame_as_to_a_full_decode() {
    // A 1600×1200 photo stored sideways with EXIF orientation 6 (rotate 90° clockwise to view).
    let img = image::open(fixture("faces/obama_biden_two_people.jpg")).unwrap().to_rgb8();
    let img = image::imageops::resize(&img, 1600, 940, FilterType::Triangle);
    let sideways = DynamicImage::ImageRgb8(image::imageops::rotate270(&img));
    let mut bytes = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(&mut bytes, 90);
    let exif = exif_orientation(6);
    encoder.set_exif_metadata(exif).unwrap();
    encoder.encode_image(&sideways).unwrap();
    let full = Frame::decode(&bytes).unwrap();
    assert_eq!((full.width(), full.height()), (1600, 940), "the full decode is upright");
    // The browser sizes its scaled decode from the header alone.
    assert_eq!(mien::frame::header_dimensions(&bytes), Some((940, 1600)));
    assert_eq!(mien::frame::upright_dimensions(&bytes[..bytes.len().min(1 << 16)]), Some((1600, 940)));
    let plain = jpeg(&img);
    assert_eq!(mien::frame::upright_dimensions(&plain), Some((1600, 940)));
    let photo = Frame::decode_photo(&bytes, Some(470)).unwrap();
    assert_eq!((photo.width, photo.height), (1600, 940));
    assert_eq!((photo.frame.width(), photo.frame.height()), (800, 470));
    // The working frame is the upright photo, scaled: compare with the full decode scaled alike.
    let expect = image::imageops::resize(
        &RgbImage::from_raw(1600, 940, full.rgb().to_vec()).unwrap(),
        800,
        470,
        FilterType::Triangle,
    );
    let diff: f64 =
        expect.as_raw().iter().zip(photo.frame.rgb()).map(|(&a, &b)| (a as f64 - b as f64).abs()).sum::<f64>()
            / expect.as_raw().len() as f64;
    assert!(diff < 4.0, "mean difference {diff:.2} per channel from the upright photo");
}
