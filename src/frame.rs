//! Decoded images: the one place where outside bytes become pixels.
//!
//! Every photo a user drops and every dataset image goes through [`Frame::decode`], so the limits
//! that keep a hostile header from allocating gigabytes, and the EXIF rotation that keeps a phone
//! photo upright, are applied everywhere alike.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits};

use crate::detect::resample::downscale_rgb;

/// Largest width or height accepted, in pixels. A 30000×30000 header is refused before any pixel
/// buffer is allocated.
pub const MAX_DIMENSION: u32 = 12_000;
/// Largest decoded buffer accepted, in bytes (RGBA 16-bit at the largest size fits comfortably).
pub const MAX_ALLOC_BYTES: u64 = 1 << 30;

/// Why an image could not be turned into a [`Frame`]. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the file is empty (0 bytes); choose a JPEG, PNG, GIF, WebP or BMP photo")]
    Empty,
    #[error("this is not an image mien can read (not JPEG, PNG, GIF, WebP or BMP); choose a photo file")]
    NotAnImage,
    #[error("the image is {width}×{height} pixels; the largest accepted is {max}×{max}: scale it down and try again")]
    TooLarge { width: u32, height: u32, max: u32 },
    #[error("the image is {width}×{height} pixels, too small to hold a face")]
    TooSmall { width: u32, height: u32 },
    #[error("the image file is damaged or truncated ({0}); re-export or re-download it")]
    Corrupt(String),
    #[error("the pixel buffer does not match {width}×{height} RGBA ({len} bytes)")]
    BadBuffer { width: u32, height: u32, len: usize },
}

/// An 8-bit RGB image, row-major, 3 bytes a pixel: what the detector and the cropper read.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame({}×{})", self.width, self.height)
    }
}

impl Frame {
    /// Decodes JPEG/PNG/GIF (first frame)/WebP/BMP bytes into an upright RGB frame.
    ///
    /// The format is sniffed from the bytes, never from a file name. Dimensions are checked from
    /// the header before decoding, the EXIF orientation is applied, alpha is dropped and grayscale
    /// is replicated to three channels (as the reference MTCNN's PIL `convert("RGB")` does).
    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        Frame::decode_within(bytes, MAX_DIMENSION)
    }

    /// [`Frame::decode`] with a smaller largest side (at most [`MAX_DIMENSION`]): the fuzz
    /// targets use it so that a mutated header cannot make each execution decode a huge image.
    pub fn decode_within(bytes: &[u8], max_dimension: u32) -> Result<Frame, FrameError> {
        let (mut image, orientation) = decode_checked(bytes, max_dimension)?;
        image.apply_orientation(orientation);
        Ok(Frame::from_dynamic(&image))
    }

    /// Decodes a photo into a frame whose shorter side is at most `max_short_side` pixels
    /// (area-averaged; no limit with `None`), upright, remembering the photo's own size.
    ///
    /// Peak memory is the decoded photo once, in the file's own pixel layout, plus the small
    /// copy: no RGB copy of the full photo is made and the rotation is applied to the small one.
    pub fn decode_photo(bytes: &[u8], max_short_side: Option<u32>) -> Result<Photo, FrameError> {
        let (image, orientation) = decode_checked(bytes, MAX_DIMENSION)?;
        let (w, h) = (image.width(), image.height());
        let (out_w, out_h) = bounded_size(w, h, max_short_side);
        let mut small = if (out_w, out_h) == (w, h) {
            image
        } else {
            // 8-bit layouts are read as stored; others (16-bit, float) through an RGB copy.
            let converted;
            let (raw, channels): (&[u8], usize) = match &image {
                DynamicImage::ImageLuma8(b) => (b.as_raw(), 1),
                DynamicImage::ImageLumaA8(b) => (b.as_raw(), 2),
                DynamicImage::ImageRgb8(b) => (b.as_raw(), 3),
                DynamicImage::ImageRgba8(b) => (b.as_raw(), 4),
                other => {
                    converted = other.to_rgb8();
                    (converted.as_raw(), 3)
                }
            };
            let rgb = downscale_rgb(raw, w as usize, h as usize, channels, out_w as usize, out_h as usize);
            drop(image);
            let buffer = image::RgbImage::from_raw(out_w, out_h, rgb)
                .ok_or_else(|| FrameError::Corrupt("downscaled buffer size".into()))?;
            DynamicImage::ImageRgb8(buffer)
        };
        small.apply_orientation(orientation);
        let frame = Frame::from_dynamic(&small);
        let (width, height) = if sideways(orientation) { (h, w) } else { (w, h) };
        Ok(Photo { frame, width, height })
    }

    /// Converts an already decoded image (alpha dropped, gray replicated).
    pub fn from_dynamic(image: &DynamicImage) -> Frame {
        let rgb = image.to_rgb8();
        Frame { width: rgb.width(), height: rgb.height(), rgb: rgb.into_raw() }
    }

    /// Wraps RGBA bytes as a canvas `ImageData` holds them (a webcam frame).
    pub fn from_rgba(width: u32, height: u32, rgba: &[u8]) -> Result<Frame, FrameError> {
        let n = width as usize * height as usize;
        if rgba.len() != n * 4 || n == 0 {
            return Err(FrameError::BadBuffer { width, height, len: rgba.len() });
        }
        let mut rgb = Vec::with_capacity(n * 3);
        for px in rgba.chunks_exact(4) {
            rgb.extend_from_slice(&px[..3]);
        }
        Ok(Frame { width, height, rgb })
    }

    /// Wraps RGB bytes (3 a pixel, row-major).
    pub fn from_rgb(width: u32, height: u32, rgb: Vec<u8>) -> Result<Frame, FrameError> {
        let n = width as usize * height as usize;
        if rgb.len() != n * 3 || n == 0 {
            return Err(FrameError::BadBuffer { width, height, len: rgb.len() });
        }
        Ok(Frame { width, height, rgb })
    }

    /// A gray image replicated to RGB (dataset crops are 8-bit gray).
    pub fn from_gray(width: u32, height: u32, gray: &[u8]) -> Result<Frame, FrameError> {
        let n = width as usize * height as usize;
        if gray.len() != n || n == 0 {
            return Err(FrameError::BadBuffer { width, height, len: gray.len() });
        }
        let rgb = gray.iter().flat_map(|&g| [g, g, g]).collect();
        Ok(Frame { width, height, rgb })
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// Row-major RGB bytes.
    pub fn rgb(&self) -> &[u8] {
        &self.rgb
    }

    /// The pixel at (x, y) as `[r, g, b]`; coordinates must be inside the frame.
    #[inline]
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }
}

/// Checks the header (format, size within `max_dimension`, a JPEG cut short) and decodes, with
/// the decoder's allocation limits on; returns the image as stored and its EXIF orientation.
fn decode_checked(bytes: &[u8], max_dimension: u32) -> Result<(DynamicImage, Orientation), FrameError> {
    let max_dimension = max_dimension.min(MAX_DIMENSION);
    if bytes.is_empty() {
        return Err(FrameError::Empty);
    }
    let reader =
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| FrameError::Corrupt(e.to_string()))?;
    if reader.format().is_none() {
        return Err(FrameError::NotAnImage);
    }
    // Only the header is read here; the size check below is what protects the allocation.
    let mut reader = reader;
    reader.no_limits();
    // Some decoders refuse a huge header with a bare "limit exceeded" (notably on 32-bit
    // wasm), so the common formats' dimensions are read straight from their headers first.
    let (width, height) = match header_dimensions(bytes) {
        Some(d) => d,
        None => reader.into_dimensions().map_err(map_image_error)?,
    };
    if width > max_dimension || height > max_dimension {
        return Err(FrameError::TooLarge { width, height, max: max_dimension });
    }
    // The JPEG decoder fills a cut-off scan with gray rather than failing: catch it here, or a
    // half-downloaded photo would be analysed as if whole.
    if bytes.starts_with(&[0xFF, 0xD8]) && !jpeg_is_complete(bytes) {
        return Err(FrameError::Corrupt("the JPEG data stops before its end marker".into()));
    }
    let mut reader =
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| FrameError::Corrupt(e.to_string()))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(max_dimension);
    limits.max_image_height = Some(max_dimension);
    limits.max_alloc = Some(MAX_ALLOC_BYTES);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(map_image_error)?;
    let orientation = decoder.orientation().map_err(map_image_error)?;
    let image = DynamicImage::from_decoder(decoder).map_err(map_image_error)?;
    Ok((image, orientation))
}

/// The size of a `width × height` image scaled down (never up) so that its shorter side is at
/// most `max_short_side`, keeping the aspect ratio.
pub fn bounded_size(width: u32, height: u32, max_short_side: Option<u32>) -> (u32, u32) {
    let short = width.min(height);
    match max_short_side {
        Some(limit) if limit >= 1 && short > limit => {
            let k = limit as f64 / short as f64;
            let scale = |v: u32| ((v as f64 * k).round() as u32).clamp(1, v);
            (scale(width), scale(height))
        }
        _ => (width, height),
    }
}

/// A photo prepared for analysis: a frame of bounded size, and the upright size of the photo it
/// was made from, so that what is found in the frame can be reported in the photo's own pixels.
#[derive(Debug, Clone)]
pub struct Photo {
    pub frame: Frame,
    /// The photo's width and height, upright, in its own pixels.
    pub width: u32,
    pub height: u32,
}

impl Photo {
    /// A frame analysed at its own size.
    pub fn whole(frame: Frame) -> Photo {
        let (width, height) = (frame.width(), frame.height());
        Photo { frame, width, height }
    }

    /// Photo pixels per frame pixel, horizontally and vertically.
    pub fn scale(&self) -> (f32, f32) {
        (self.width as f32 / self.frame.width() as f32, self.height as f32 / self.frame.height() as f32)
    }
}

/// Whether a JPEG or PNG file whose first bytes are `head` and last bytes `tail` (both may be the
/// whole file) ends as such a file must. A file cut short (a half-finished download) is refused
/// this way before any decoder, which may fill the missing part with grey, sees it; the browser
/// checks photos with it before its own decoder runs. Other formats: true.
pub fn ends_complete(head: &[u8], tail: &[u8]) -> bool {
    if head.starts_with(&[0xFF, 0xD8]) {
        // The last scan may start before the tail.
        return jpeg_ends_after_last_scan(tail, true);
    }
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        return tail.windows(4).any(|w| w == b"IEND");
    }
    true
}

/// Whether a JPEG has an end-of-image marker after its last start-of-scan. Inside entropy-coded
/// data a 0xFF byte is always followed by 0x00 or a restart marker, so 0xFFD9 there is the real
/// end; an embedded EXIF thumbnail's end marker comes before the main scan and does not count.
fn jpeg_is_complete(b: &[u8]) -> bool {
    jpeg_ends_after_last_scan(b, false)
}

/// Whether `b` (a JPEG, or its last bytes) has an end-of-image marker after its last
/// start-of-scan; with no start-of-scan in `b`, `scan_before` answers.
fn jpeg_ends_after_last_scan(b: &[u8], scan_before: bool) -> bool {
    let last = |marker: u8| b.windows(2).rposition(|w| w[0] == 0xFF && w[1] == marker);
    match (last(0xDA), last(0xD9)) {
        (Some(sos), Some(eoi)) => eoi > sos,
        (None, Some(_)) => scan_before,
        _ => false,
    }
}

/// Width and height from a PNG, GIF, BMP or JPEG header, without decoding anything.
pub fn header_dimensions(b: &[u8]) -> Option<(u32, u32)> {
    let be32 = |i: usize| Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?));
    let le16 = |i: usize| Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?) as u32);
    let be16 = |i: usize| Some(u16::from_be_bytes(b.get(i..i + 2)?.try_into().ok()?) as u32);
    if b.starts_with(b"\x89PNG\r\n\x1a\n") && b.get(12..16)? == b"IHDR" {
        return Some((be32(16)?, be32(20)?));
    }
    if b.starts_with(b"GIF8") {
        return Some((le16(6)?, le16(8)?));
    }
    if b.starts_with(b"BM") {
        let w = i32::from_le_bytes(b.get(18..22)?.try_into().ok()?);
        let h = i32::from_le_bytes(b.get(22..26)?.try_into().ok()?);
        return Some((w.unsigned_abs(), h.unsigned_abs()));
    }
    if b.starts_with(&[0xFF, 0xD8]) {
        // Walk the segments to the first start-of-frame marker.
        let mut i = 2;
        while i + 4 <= b.len() {
            if b[i] != 0xFF {
                return None;
            }
            let marker = b[i + 1];
            if marker == 0xFF {
                i += 1;
                continue;
            }
            let len = be16(i + 2)? as usize;
            let sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
            if sof {
                return Some((be16(i + 7)?, be16(i + 5)?));
            }
            i += 2 + len;
        }
    }
    None
}

/// The EXIF orientation of a JPEG whose first bytes are `head` (its APP1 "Exif" segment must be
/// in them, as it is in any JPEG's first 64 KiB); `None` for other files or no orientation tag.
pub fn jpeg_orientation(head: &[u8]) -> Option<Orientation> {
    if !head.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    while i + 4 <= head.len() && head[i] == 0xFF {
        let marker = head[i + 1];
        // Metadata segments come before the first frame or scan.
        if matches!(marker, 0xC0..=0xCF | 0xDA) {
            return None;
        }
        let len = u16::from_be_bytes([head[i + 2], head[i + 3]]) as usize;
        let body = head.get(i + 4..(i + 2 + len).min(head.len()))?;
        if marker == 0xE1 && body.starts_with(b"Exif\0\0") {
            return Orientation::from_exif_chunk(&body[6..]);
        }
        i += 2 + len;
    }
    None
}

/// Width and height of an image as it is viewed: [`header_dimensions`] with a JPEG's EXIF
/// rotation applied (a photo stored sideways has its sides swapped).
pub fn upright_dimensions(head: &[u8]) -> Option<(u32, u32)> {
    let (w, h) = header_dimensions(head)?;
    Some(if jpeg_orientation(head).is_some_and(sideways) { (h, w) } else { (w, h) })
}

/// Whether an image stored with `orientation` is viewed with its sides swapped.
fn sideways(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH
    )
}

fn map_image_error(e: image::ImageError) -> FrameError {
    match e {
        image::ImageError::Limits(_) => FrameError::TooLarge { width: 0, height: 0, max: MAX_DIMENSION },
        image::ImageError::Unsupported(u) => {
            if matches!(u.kind(), image::error::UnsupportedErrorKind::Format(_)) {
                FrameError::NotAnImage
            } else {
                FrameError::Corrupt(u.to_string())
            }
        }
        other => FrameError::Corrupt(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_text_are_refused_with_their_own_errors() {
        assert!(matches!(Frame::decode(b""), Err(FrameError::Empty)));
        assert!(matches!(Frame::decode(b"hello, I am not a photo"), Err(FrameError::NotAnImage)));
    }

    #[test]
    fn huge_png_header_is_refused_before_decoding() {
        // A valid PNG signature and IHDR claiming 30000×30000, with no pixel data at all.
        let png = include_bytes!("../tests/fixtures/bad/huge_header_30000x30000.png");
        match Frame::decode(png) {
            Err(FrameError::TooLarge { width: 30000, height: 30000, .. }) => {}
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn header_dimensions_of_real_files() {
        let dir = crate::test_dir().join("tests/fixtures/faces");
        for (file, dims) in [("grace_hopper.jpg", (512, 600)), ("bryan_codait_tiny.png", (115, 115))] {
            let bytes = std::fs::read(dir.join(file)).unwrap();
            assert_eq!(header_dimensions(&bytes), Some(dims), "{file}");
        }
        assert_eq!(header_dimensions(b"hello"), None);
    }

    #[test]
    fn rgba_buffer_must_match_dimensions() {
        assert!(Frame::from_rgba(2, 2, &[0; 15]).is_err());
        let f = Frame::from_rgba(2, 1, &[1, 2, 3, 255, 4, 5, 6, 255]).unwrap();
        assert_eq!(f.rgb(), &[1, 2, 3, 4, 5, 6]);
    }
}
