//! The bad-input corpus: one test per kind of awkward file a person may drop on the page. Each
//! asserts what happens (the kind of error, or that the image is read the right way up and its
//! face found); `trainer/tests/detect_cli.rs` checks that such files never stop the others.

mod common;

use std::io::Cursor;

use common::{detector, fixture, iou};
use image::{DynamicImage, ImageFormat};
use mien::{Frame, FrameError};

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn portrait() -> DynamicImage {
    image::load_from_memory(&std::fs::read(fixture("faces/obama_portrait_small.jpg")).unwrap()).unwrap()
}

/// The face of the upright portrait, as the detector finds it.
fn reference_box() -> [f32; 4] {
    let faces = detector().detect(&Frame::from_dynamic(&portrait())).unwrap();
    assert_eq!(faces.len(), 1);
    faces[0].bbox
}

fn one_face_like_the_original(bytes: &[u8], what: &str) {
    let frame = Frame::decode(bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!((frame.width(), frame.height()), (320, 240), "{what}");
    let faces = detector().detect(&frame).unwrap();
    assert_eq!(faces.len(), 1, "{what}: {faces:?}");
    let overlap = iou(faces[0].bbox, reference_box());
    assert!(overlap > 0.8, "{what}: the face is elsewhere (IoU {overlap})");
}

#[test]
fn empty_file() {
    assert!(matches!(Frame::decode(b""), Err(FrameError::Empty)));
}

#[test]
fn text_renamed_jpg() {
    assert!(matches!(Frame::decode(b"meeting notes, definitely not a photo"), Err(FrameError::NotAnImage)));
}

#[test]
fn truncated_jpeg() {
    let bytes = std::fs::read(fixture("faces/obama_portrait_small.jpg")).unwrap();
    match Frame::decode(&bytes[..bytes.len() / 3]) {
        Err(FrameError::Corrupt(m)) => assert!(!m.is_empty()),
        other => panic!("truncated JPEG: {other:?}"),
    }
}

#[test]
fn truncated_png() {
    let bytes = std::fs::read(fixture("no_faces/coffee.png")).unwrap();
    assert!(matches!(Frame::decode(&bytes[..bytes.len() / 3]), Err(FrameError::Corrupt(_))));
}

#[test]
fn png_16_bit() {
    let img = DynamicImage::ImageRgb16(portrait().to_rgb16());
    one_face_like_the_original(&encode(&img, ImageFormat::Png), "16-bit PNG");
}

#[test]
fn cmyk_jpeg() {
    let bytes = std::fs::read(fixture("bad/obama_portrait_small_cmyk.jpg")).unwrap();
    one_face_like_the_original(&bytes, "CMYK JPEG");
    // The colours survive the conversion (not inverted, not washed out).
    let cmyk = Frame::decode(&bytes).unwrap();
    let rgb = Frame::from_dynamic(&portrait());
    let mean_diff: f64 = cmyk.rgb().iter().zip(rgb.rgb()).map(|(&a, &b)| (a as f64 - b as f64).abs()).sum::<f64>()
        / rgb.rgb().len() as f64;
    assert!(mean_diff < 20.0, "CMYK colours differ from the RGB original by {mean_diff:.1} on average");
}

#[test]
fn rgba_png() {
    let mut img = portrait().to_rgba8();
    for p in img.pixels_mut() {
        p[3] = 200;
    }
    one_face_like_the_original(&encode(&DynamicImage::ImageRgba8(img), ImageFormat::Png), "RGBA PNG");
}

#[test]
fn grayscale_png() {
    let img = DynamicImage::ImageLuma8(portrait().to_luma8());
    one_face_like_the_original(&encode(&img, ImageFormat::Png), "grayscale PNG");
}

#[test]
fn one_pixel_image() {
    let img = DynamicImage::ImageRgb8(image::RgbImage::new(1, 1));
    let frame = Frame::decode(&encode(&img, ImageFormat::Png)).unwrap();
    assert!(detector().detect(&frame).unwrap().is_empty());
}

#[test]
fn huge_header_is_refused_before_decoding() {
    let bytes = std::fs::read(fixture("bad/huge_header_30000x30000.png")).unwrap();
    match Frame::decode(&bytes) {
        Err(FrameError::TooLarge { width: 30000, height: 30000, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn animated_gif_uses_its_first_frame() {
    use image::codecs::gif::{GifEncoder, Repeat};
    let face = portrait().to_rgba8();
    let noise =
        image::RgbaImage::from_fn(320, 240, |x, y| image::Rgba([(x * 7 + y * 13) as u8, (x * y) as u8, 90, 255]));
    let mut bytes = Vec::new();
    {
        let mut enc = GifEncoder::new_with_speed(&mut bytes, 10);
        enc.set_repeat(Repeat::Infinite).unwrap();
        enc.encode_frame(image::Frame::new(face)).unwrap();
        enc.encode_frame(image::Frame::new(noise)).unwrap();
    }
    one_face_like_the_original(&bytes, "animated GIF");
}

/// A JPEG whose pixels are stored turned a quarter to the left, with the EXIF orientation tag (6:
/// "rotate 90° clockwise to display") that a phone writes.
fn jpeg_with_exif_rotation() -> Vec<u8> {
    let stored = portrait().rotate270();
    let jpeg = encode(&stored, ImageFormat::Jpeg);
    let mut tiff = vec![b'I', b'I', 0x2A, 0x00, 8, 0, 0, 0, 1, 0];
    tiff.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0]); // Orientation = 6
    tiff.extend_from_slice(&[0, 0, 0, 0]);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let len = (app1.len() + 2) as u16;
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_rotation_is_honoured() {
    let bytes = jpeg_with_exif_rotation();
    // Without the tag the stored image is 240×320 and on its side.
    assert_eq!(image::load_from_memory(&bytes).unwrap().width(), 240);
    one_face_like_the_original(&bytes, "EXIF-rotated JPEG");
}
