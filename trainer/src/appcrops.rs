//! Training on the crops the app cuts (`train --app-crops`).
//!
//! The app never sees a dataset's crop: it finds the face with MTCNN and cuts it with the model's
//! crop convention, and that crop differs from the dataset's (another detector cut those). Here
//! each training image is handed to the app's pipeline as `crop-check` hands a test image:
//! upscaled and pasted at a seeded place of a larger frame ([`synthetic_frame`]); the face the
//! detector finds there is cut as the app cuts it. Where the frame gives no face, the image as it
//! is (a photo that is only a face) is searched; where neither does, the dataset crop stays.
//!
//! Detection takes a few minutes for FER2013's training images, so the crops are cached under
//! `$MIEN_CACHE/app-crops`, keyed by the images, the crop convention, the detector's settings and
//! the seed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use mien::align::{crop_face, CropConfig};
use mien::{DetectorConfig, Frame};

use crate::augment::SplitMix64;
use crate::cropcheck::synthetic_frame;
use crate::detect::detector;
use crate::train::Example;

/// Bumped whenever the way a crop is made changes, so older caches are not read.
const VERSION: u64 = 1;
/// Smallest face searched in the synthetic frames, as `crop-check` does.
const FRAME_MIN_FACE: f32 = 40.0;

/// Where each example's training crop came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The dataset's crop: the app found no face.
    Dataset = 0,
    /// The face found in a synthetic frame.
    Frame = 1,
    /// The face found in the image as it is.
    Bare = 2,
}

/// How many examples got which crop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppCropCounts {
    pub in_frame: usize,
    pub bare: usize,
    pub kept: usize,
}

impl std::fmt::Display for AppCropCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = (self.in_frame + self.bare + self.kept).max(1) as f64;
        write!(
            f,
            "{} found in a frame ({:.1} %), {} only as they are, {} kept their dataset crop (no face found)",
            self.in_frame,
            100.0 * self.in_frame as f64 / n,
            self.bare,
            self.kept
        )
    }
}

/// Replaces each example's pixels (gray squares of side `crop.size`) with the crop the app cuts
/// of it, and says how many came from where. `what` names the set in progress lines.
pub fn to_app_crops(examples: &mut [Example], crop: &CropConfig, seed: u64, what: &str) -> Result<AppCropCounts> {
    let side = crop.size;
    let area = (side * side) as usize;
    anyhow::ensure!(
        examples.iter().all(|e| e.pixels.len() == area),
        "--app-crops needs face crops of {side}×{side} (the model's input)"
    );
    let path = cache_path(examples, crop, &DetectorConfig::default(), seed);
    let made = match read_cache(&path, examples.len(), area) {
        Some(made) => {
            eprintln!("{what}: the app's crops from {}", path.display());
            made
        }
        None => {
            let made = make(examples, crop, seed, what)?;
            write_cache(&path, &made).with_context(|| format!("caching the app's crops in {}", path.display()))?;
            made
        }
    };
    let mut counts = AppCropCounts::default();
    for (e, (source, pixels)) in examples.iter_mut().zip(made) {
        match source {
            Source::Frame => counts.in_frame += 1,
            Source::Bare => counts.bare += 1,
            Source::Dataset => counts.kept += 1,
        }
        if source != Source::Dataset {
            e.dataset_pixels = Some(std::mem::replace(&mut e.pixels, pixels));
        }
    }
    eprintln!("{what}: {counts}");
    Ok(counts)
}

/// The crop of one example: in its synthetic frame, else as it is, else none.
fn app_crop_of(
    e: &Example,
    index: usize,
    crop: &CropConfig,
    seed: u64,
    framed: &mien::FaceDetector,
    bare: &mien::FaceDetector,
) -> Result<(Source, Vec<u8>)> {
    let side = crop.size;
    // Each image's frame from its own generator, so the crops do not depend on how the work is
    // shared between threads.
    let mut rng = SplitMix64::new(seed ^ (index as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
    let frame = synthetic_frame(&e.pixels, side, &mut rng)?;
    if let Some(face) = framed.detect(&frame)?.into_iter().next() {
        return Ok((Source::Frame, crop_face(&frame, &face, crop).pixels));
    }
    let frame = Frame::from_gray(side, side, &e.pixels)?;
    if let Some(face) = bare.detect(&frame)?.into_iter().next() {
        return Ok((Source::Bare, crop_face(&frame, &face, crop).pixels));
    }
    Ok((Source::Dataset, Vec::new()))
}

/// Runs the app's pipeline over every example, on two threads.
fn make(examples: &[Example], crop: &CropConfig, seed: u64, what: &str) -> Result<Vec<(Source, Vec<u8>)>> {
    const THREADS: usize = 2;
    let done = AtomicUsize::new(0);
    let started = std::time::Instant::now();
    let chunk = examples.len().div_ceil(THREADS).max(1);
    let parts = std::thread::scope(|scope| {
        let handles: Vec<_> = examples
            .chunks(chunk)
            .enumerate()
            .map(|(t, part)| {
                let done = &done;
                scope.spawn(move || -> Result<Vec<(Source, Vec<u8>)>> {
                    let framed = detector(FRAME_MIN_FACE)?;
                    let bare = detector(DetectorConfig::default().min_face_size)?;
                    let mut out = Vec::with_capacity(part.len());
                    for (i, e) in part.iter().enumerate() {
                        out.push(app_crop_of(e, t * chunk + i, crop, seed, &framed, &bare)?);
                        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if t == 0 && i % 200 == 0 {
                            let s = started.elapsed().as_secs_f64();
                            let left = s / n as f64 * (examples.len() - n) as f64;
                            eprint!(
                                "\r{what}: the app's crops of {n} of {} images ({left:.0} s left) ",
                                examples.len()
                            );
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("an app-crop thread panicked")).collect::<Result<Vec<_>>>()
    })?;
    eprintln!("\r{what}: the app's crops of {} images in {:.0} s", examples.len(), started.elapsed().as_secs_f64());
    Ok(parts.into_iter().flatten().collect())
}

/// FNV-1a over everything that decides the crops.
fn cache_path(examples: &[Example], crop: &CropConfig, detector: &DetectorConfig, seed: u64) -> PathBuf {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(&VERSION.to_le_bytes());
    eat(&seed.to_le_bytes());
    eat(&crop.size.to_le_bytes());
    eat(&crop.margin.to_bits().to_le_bytes());
    eat(&crop.shift.to_bits().to_le_bytes());
    eat(&[crop.align as u8]);
    // The detector's settings (the turned look, say): other settings find other faces.
    eat(serde_json::to_string(detector).unwrap_or_default().as_bytes());
    // And the second opinion's weights, which decide what its close look finds.
    eat(crate::detect::shipped_second_opinion());
    eat(&(examples.len() as u64).to_le_bytes());
    for e in examples {
        eat(&e.pixels);
    }
    crate::examples::cache_dir().join("app-crops").join(format!("{h:016x}.bin"))
}

/// The cache: per example one byte (its [`Source`]) and, unless the dataset crop was kept, its
/// pixels. Anything unexpected reads as no cache.
fn read_cache(path: &std::path::Path, n: usize, area: usize) -> Option<Vec<(Source, Vec<u8>)>> {
    let bytes = std::fs::read(path).ok()?;
    let mut out = Vec::with_capacity(n);
    let mut at = 0;
    for _ in 0..n {
        let source = match *bytes.get(at)? {
            0 => Source::Dataset,
            1 => Source::Frame,
            2 => Source::Bare,
            _ => return None,
        };
        at += 1;
        if source == Source::Dataset {
            out.push((source, Vec::new()));
        } else {
            out.push((source, bytes.get(at..at + area)?.to_vec()));
            at += area;
        }
    }
    (at == bytes.len()).then_some(out)
}

fn write_cache(path: &std::path::Path, made: &[(Source, Vec<u8>)]) -> Result<()> {
    let mut bytes = Vec::new();
    for (source, pixels) in made {
        bytes.push(*source as u8);
        bytes.extend_from_slice(pixels);
    }
    crate::fsutil::replace_with(path, |tmp| Ok(std::fs::write(tmp, &bytes)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Crops that other detector settings made are not read as this one's.
    #[test]
    fn the_cache_of_other_detector_settings_is_another() {
        let examples = vec![Example { pixels: vec![7; 4], label: 0, soft: None, dataset_pixels: None }];
        let crop = CropConfig::default();
        let now = DetectorConfig::default();
        let upright = DetectorConfig { turned_look: None, ..now.clone() };
        assert_eq!(cache_path(&examples, &crop, &now, 1), cache_path(&examples, &crop, &now, 1));
        assert_ne!(cache_path(&examples, &crop, &now, 1), cache_path(&examples, &crop, &upright, 1));
    }

    /// A cache that is cut short or holds a bad byte is recomputed, never half-read.
    #[test]
    fn a_damaged_cache_reads_as_none() {
        let dir = std::env::temp_dir().join(format!("mien-app-crops-{}", std::process::id()));
        let path = dir.join("c.bin");
        let made = vec![(Source::Frame, vec![7u8; 4]), (Source::Dataset, vec![]), (Source::Bare, vec![9u8; 4])];
        write_cache(&path, &made).unwrap();
        let back = read_cache(&path, 3, 4).unwrap();
        assert_eq!(back, made);
        assert!(read_cache(&path, 4, 4).is_none(), "more examples than cached");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.pop();
        std::fs::write(&path, &bytes).unwrap();
        assert!(read_cache(&path, 3, 4).is_none(), "cut short");
        bytes[0] = 5;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read_cache(&path, 3, 4).is_none(), "bad source byte");
        std::fs::remove_dir_all(&dir).ok();
    }
}
