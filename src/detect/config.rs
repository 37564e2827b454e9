//! The cascade's settings, and the smallest face searched for in an image of a given size.

use serde::{Deserialize, Serialize};

use super::resample::Padding;
use super::DetectError;

/// Tunables of the cascade; the thresholds and scale factor are facenet-pytorch's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorConfig {
    /// Smallest face side searched for, in pixels. Larger is faster.
    pub min_face_size: f32,
    /// Smallest face side searched for, as a fraction of the image's shorter side; the larger of
    /// this and `min_face_size` applies. It keeps the work per image bounded whatever its size (a
    /// face of 20 pixels in a 12-megapixel photo is noise, not what anyone asks about) and means
    /// the same on every photo. 0 searches down to `min_face_size` pixels, at a cost that grows
    /// with the image's area.
    #[serde(default = "default_min_face_fraction")]
    pub min_face_fraction: f32,
    /// Score thresholds of P-Net, R-Net and O-Net.
    pub thresholds: [f32; 3],
    /// Ratio between pyramid scales.
    pub scale_factor: f32,
    /// How the cascade treats faces that reach the frame's edges or fill it.
    #[serde(default)]
    pub edges: EdgeSearch,
    /// O-Net score a face must reach when it comes from the second look: the few best P-Net
    /// and R-Net candidates that fell below those stages' thresholds are scored by O-Net too,
    /// and kept at this stricter score. P-Net and R-Net are cheap judges whose thresholds drop
    /// faces O-Net is sure of (tilted, half-covered, grey, cut by the edge); O-Net is the one
    /// that tells faces from the rest. `None` turns the second look off.
    #[serde(default = "default_second_look")]
    pub second_look: Option<f32>,
    /// O-Net score a face must reach when it comes from the turned look: where the cascade finds
    /// no face at all, it searches the frame again rotated by each of [`TURNED_LOOK_ANGLES`], so
    /// that a head tilted far from upright stands upright, and keeps what it finds there at this
    /// score and with its landmarks where a face's are. `None` turns the turned look off.
    #[serde(default = "default_turned_look")]
    pub turned_look: Option<f32>,
    /// Score a face must reach in the close look: where neither the cascade nor the turned look
    /// finds a face, the second opinion (an O-Net fine-tuned on faces that fill the picture,
    /// [`super::FaceDetector::with_second_opinion`]) looks at large windows of the frame, and
    /// keeps what it scores at this with its landmarks where a face's are. Skipped when the
    /// detector has no second opinion loaded; `None` turns it off.
    #[serde(default = "default_close_look")]
    pub close_look: Option<f32>,
    /// The pretrained O-Net's score a face of the close look must also reach, its best on three
    /// windows about the same box (0.9, 1.1 and 1.3 of its side). The second opinion learnt faces
    /// against flat and scrambled surroundings only, never the world's clothes, cats and skies;
    /// on a few of those it is sure of a face where the pretrained O-Net, taught on the world, is
    /// all but sure there is none.
    #[serde(default = "default_close_look_floor")]
    pub close_look_floor: f32,
}

/// The default O-Net score of a face from the turned look. Chosen on 1,000 FER2013 training
/// images and 152 faceless frames (`detection_variants`, docs/MEASUREMENTS.md): 0.95 also raised
/// a cat's face, 0.99 gave back most of the faces it finds.
pub const TURNED_LOOK_SCORE: f32 = 0.97;

/// The rotations of the turned look, in degrees, in the order they are searched.
pub const TURNED_LOOK_ANGLES: [f32; 4] = [20.0, -20.0, 40.0, -40.0];

/// The default score of a face from the close look.
pub const CLOSE_LOOK_SCORE: f32 = 0.95;

fn default_close_look() -> Option<f32> {
    Some(CLOSE_LOOK_SCORE)
}

/// The default [`DetectorConfig::close_look_floor`].
pub const CLOSE_LOOK_FLOOR: f32 = 0.5;

fn default_close_look_floor() -> f32 {
    CLOSE_LOOK_FLOOR
}

/// The default O-Net score of a face from the second look.
pub const SECOND_LOOK_SCORE: f32 = 0.95;

fn default_second_look() -> Option<f32> {
    Some(SECOND_LOOK_SCORE)
}

fn default_turned_look() -> Option<f32> {
    Some(TURNED_LOOK_SCORE)
}

/// How the cascade treats faces at the frame's edges. facenet-pytorch clips a candidate's window
/// to the frame and stretches what is left to R-Net's and O-Net's input, and its pyramid never
/// searches for a face larger than the frame's shorter side, so a face that fills the picture or
/// is cut by its edge is often lost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EdgeSearch {
    /// Fill for the part of a crop outside the frame; `None` clips and stretches.
    pub padding: Option<Padding>,
    /// Also search the coarse pyramid levels (faces of at least a fifth of the shorter side) of
    /// a padded frame, up to faces 1.5 times the shorter side.
    pub padded_pyramid: bool,
}

impl Default for EdgeSearch {
    fn default() -> Self {
        EdgeSearch { padding: Some(Padding::Fill(128)), padded_pyramid: true }
    }
}

impl EdgeSearch {
    /// facenet-pytorch's behaviour: clip and stretch, no search past the edges.
    pub const CLIPPED: EdgeSearch = EdgeSearch { padding: None, padded_pyramid: false };
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            min_face_size: 20.0,
            min_face_fraction: DEFAULT_MIN_FACE_FRACTION,
            thresholds: [0.6, 0.7, 0.7],
            scale_factor: 0.709,
            edges: EdgeSearch::default(),
            second_look: default_second_look(),
            turned_look: Some(TURNED_LOOK_SCORE),
            close_look: default_close_look(),
            close_look_floor: CLOSE_LOOK_FLOOR,
        }
    }
}

/// The default smallest face, as a fraction of the shorter side: 5 %, 150 pixels of a
/// 12-megapixel photo, 24 of a 640×480 webcam frame. P-Net's first pyramid level then has a
/// shorter side of 240 pixels whatever the photo's size, which keeps a photo's analysis within
/// a few hundred milliseconds on a 2-core CPU; the smallest face in any of the test fixtures is
/// 9 % of its photo's side.
pub const DEFAULT_MIN_FACE_FRACTION: f32 = 0.05;

/// How many pixels the smallest face searched for keeps in a photo's working frame
/// ([`DetectorConfig::photo_short_side`]): more than O-Net's 48×48 input and the classifier's
/// crop, so neither sees a face coarser than it was trained on.
pub const PHOTO_FACE_PIXELS: f32 = 64.0;

/// The largest shorter side a photo is analysed at (8K's): 25 megapixels at 4:3, 75 MB of RGB.
pub const MAX_PHOTO_SHORT_SIDE: u32 = 4320;

fn default_min_face_fraction() -> f32 {
    DEFAULT_MIN_FACE_FRACTION
}

impl DetectorConfig {
    /// The smallest face side searched for in a `width × height` image, in its pixels: the
    /// larger of `min_face_size` and the fraction of the shorter side, the latter rounded down to
    /// a size of `min_face_size`'s own pyramid (`min_face_size / scale_factor^j`). The pyramid's
    /// scales are then always those the pixel setting alone gives, so an image whose fraction
    /// rounds down to `min_face_size` (a webcam frame, any photo up to 28 / fraction pixels on
    /// its shorter side) gives exactly the faces the pixel setting finds, and a larger one no
    /// faces that only a pyramid shifted between those scales would raise. It costs at most
    /// one level of P-Net work more than the exact fraction would.
    pub fn min_face_in(&self, width: u32, height: u32) -> f32 {
        let wanted = self.min_face_fraction * width.min(height) as f32;
        if wanted.is_nan() || wanted <= self.min_face_size {
            return self.min_face_size;
        }
        let step = (1.0 / self.scale_factor).ln();
        let levels = ((wanted / self.min_face_size).ln() / step + 1e-4).floor();
        self.min_face_size * (levels * step).exp()
    }

    /// The shorter side of the working frame a photo is analysed at: the smallest face searched
    /// for keeps [`PHOTO_FACE_PIXELS`] pixels in it, and it is never above
    /// [`MAX_PHOTO_SHORT_SIDE`] (a larger photo is scaled down to it whatever the setting, which
    /// bounds memory). [`crate::Frame::decode_photo`] decodes to it, the browser scales to it.
    pub fn photo_short_side(&self) -> u32 {
        let wanted = if self.min_face_fraction > 0.0 {
            (PHOTO_FACE_PIXELS / self.min_face_fraction).ceil() as u32
        } else {
            MAX_PHOTO_SHORT_SIDE
        };
        wanted.min(MAX_PHOTO_SHORT_SIDE)
    }

    /// Checks that the cascade can run with these settings.
    pub fn validate(&self) -> Result<(), DetectError> {
        if self.min_face_size.is_nan() || self.min_face_size < 12.0 {
            return Err(DetectError::Config(format!("minimum face size {} is below 12 pixels", self.min_face_size)));
        }
        if !(0.0..=0.5).contains(&self.min_face_fraction) {
            return Err(DetectError::Config(format!(
                "minimum face fraction {} is outside 0–0.5 of the shorter side",
                self.min_face_fraction
            )));
        }
        if !(self.scale_factor > 0.1 && self.scale_factor < 0.95) {
            return Err(DetectError::Config(format!("scale factor {} is outside 0.1–0.95", self.scale_factor)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_face_is_a_size_of_the_pixel_settings_pyramid() {
        let config = DetectorConfig::default();
        // A webcam frame and a small photo: the 20-pixel setting alone.
        assert_eq!(config.min_face_in(640, 480), 20.0);
        assert_eq!(config.min_face_in(600, 471), 20.0);
        // A 12-megapixel frame: 5 % is 150 pixels, rounded down to 20 / 0.709^5.
        let m = config.min_face_in(4000, 3000);
        assert!((m - 20.0 / 0.709f32.powi(5)).abs() < 1e-3, "{m}");
        assert!(m <= 150.0 && m > 150.0 * 0.709, "{m}");
        // Exactly on a level stays there (levels 20, 40, 80 with a scale factor of 1/2).
        let halves = DetectorConfig { scale_factor: 0.5, min_face_fraction: 0.04, ..config.clone() };
        assert_eq!(halves.min_face_in(3000, 2000), 80.0);
        assert_eq!(halves.min_face_in(3000, 1990), 40.0);
        assert_eq!(DetectorConfig { min_face_fraction: 0.0, ..config.clone() }.min_face_in(9000, 9000), 20.0);
    }
}
