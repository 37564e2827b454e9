//! Face detection: the MTCNN cascade (Zhang et al. 2016) on burn, following facenet-pytorch
//! 2.6.0's `detect_face` step for step so that the pretrained weights behave as they were trained.
//!
//! The cascade: a scale pyramid scanned by P-Net (candidates), per-scale and cross-scale NMS,
//! box regression and squaring; R-Net rescoring of 24×24 crops; O-Net rescoring of 48×48 crops,
//! which also places five landmarks; a final "Min" NMS. Pixel work (resampling, cropping, NMS)
//! runs on the CPU in plain Rust; the networks run on whatever burn `Device` the detector holds.

pub mod boxes;
mod config;
pub mod nets;
pub mod resample;
pub mod shared;
pub mod turn;

use std::borrow::Cow;

use burn::prelude::*;
use burn::tensor::Transaction;
use serde::{Deserialize, Serialize};

use crate::frame::Frame;
use crate::weights::{load_pytorch_safetensors, WeightsError};
use boxes::{crop_window, nms, overlap_of, padded_window, regress, square, Candidate, Overlap};
pub use config::{
    DetectorConfig, EdgeSearch, CLOSE_LOOK_FLOOR, CLOSE_LOOK_SCORE, DEFAULT_MIN_FACE_FRACTION, MAX_PHOTO_SHORT_SIDE,
    PHOTO_FACE_PIXELS, TURNED_LOOK_ANGLES, TURNED_LOOK_SCORE,
};
pub use nets::{ONet, PNet, RNet};
pub use resample::Padding;
use resample::{pad_planar, resize_area_into, resize_area_padded_into};
use shared::{Helper, NoHelper, Part, PartResult, Work, SHARED_ONET_MIN, SHARED_RNET_MIN};

/// Lowest P-Net and R-Net score of a second-look candidate.
const SECOND_LOOK_FLOOR: f32 = 0.05;
/// Second-look candidates kept per pyramid level before its NMS.
const SECOND_LOOK_PER_LEVEL: usize = 64;
/// Second-look candidates handed to R-Net and to O-Net.
const SECOND_LOOK_CANDIDATES: [usize; 2] = [16, 3];

/// Keeps the `n` best-scoring candidates, best first.
fn best_first(candidates: &mut Vec<Candidate>, n: usize) {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    candidates.truncate(n);
}

/// Pyramid levels whose shorter side is below this many pixels (faces of more than a fifth of
/// the frame's shorter side) are searched on a padded copy when [`EdgeSearch::padded_pyramid`]
/// is set.
const PADDED_BELOW_SIDE: f32 = 60.0;
/// Cells of padding on each side of such a level: half of P-Net's 12-cell window, so a window
/// centred on the edge is scanned.
const PYRAMID_PADDING: usize = 6;
/// The padded pyramid goes on down to levels of this shorter side: faces 1.5 times the
/// frame's shorter side.
const PADDED_MIN_SIDE: f32 = 8.0;

/// A detected face, in pixels of the original image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Face {
    /// `[x1, y1, x2, y2]`.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// Face probability from O-Net.
    pub score: f32,
    /// Left eye, right eye, nose, mouth left, mouth right (image left/right), each `[x, y]`.
    pub landmarks: [[f32; 2]; 5],
}

impl Face {
    pub fn width(&self) -> f32 {
        self.bbox[2] - self.bbox[0]
    }

    pub fn height(&self) -> f32 {
        self.bbox[3] - self.bbox[1]
    }

    /// The same face in an image scaled by `sx` horizontally and `sy` vertically.
    pub fn scaled(&self, sx: f32, sy: f32) -> Face {
        let [x1, y1, x2, y2] = self.bbox;
        Face {
            bbox: [x1 * sx, y1 * sy, x2 * sx, y2 * sy],
            score: self.score,
            landmarks: self.landmarks.map(|[x, y]| [x * sx, y * sy]),
        }
    }
}

/// Why detection could not run.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("invalid detector setting: {0}")]
    Config(String),
    #[error("reading results back from the {0} backend failed: {1}")]
    Backend(String, String),
    /// A helper did not run its part of a shared detection (see [`shared`]); the part then runs
    /// here, so this never reaches the caller of [`FaceDetector::detect_sharing`].
    #[error("the helper did not answer its part: {0}")]
    Helper(String),
}

/// The raw bytes of the three MTCNN safetensors files.
#[derive(Clone)]
pub struct MtcnnWeights {
    pub pnet: Vec<u8>,
    pub rnet: Vec<u8>,
    pub onet: Vec<u8>,
}

/// The side of the window O-Net looks at to follow a face, as a fraction of the face's box.
///
/// O-Net's boxes are larger than the windows it scores best: fed a square of its own box, frame
/// after frame, it sees a little more than a face each time, and on a still frame the box drifts
/// and the score falls until the face is dropped (the live page then shows no face for a frame
/// and searches again). Measured with `follow_chains` on 996 FER2013 *training* faces (200 px on a
/// 640×480 frame, ten follows in a row): 122 lost at 1.0, 65 at 0.95, 33 at 0.9, 27 at 0.85, with
/// the box after ten follows at a mean IoU of 0.918, 0.922, 0.918 and 0.903 with the search's.
pub const FOLLOW_WINDOW: f32 = 0.9;

/// The windows O-Net looks at to follow the faces of `priors` (boxes `[x1, y1, x2, y2]`): each box
/// scaled by [`FOLLOW_WINDOW`] about its centre and made square, the degenerate and non-finite
/// ones left out.
fn follow_windows(priors: &[[f32; 4]]) -> Vec<Candidate> {
    windows_about(priors, FOLLOW_WINDOW)
}

/// Each box of `boxes` scaled by `side` about its centre and made square, the degenerate and
/// non-finite ones left out.
fn windows_about(boxes: &[[f32; 4]], side: f32) -> Vec<Candidate> {
    boxes
        .iter()
        .filter(|b| b.iter().all(|v| v.is_finite()) && b[2] > b[0] && b[3] > b[1])
        .map(|&b| {
            let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
            let (hw, hh) = ((b[2] - b[0]) * side / 2.0, (b[3] - b[1]) * side / 2.0);
            square(&Candidate::of_box([cx - hw, cy - hh, cx + hw, cy + hh], 1.0))
        })
        .collect()
}

/// File names of the three weight files, as shipped in `assets/mtcnn/`.
pub const WEIGHT_FILES: [&str; 3] = ["pnet.safetensors", "rnet.safetensors", "onet.safetensors"];

/// File name of the second opinion's O-Net ([`FaceDetector::with_second_opinion`]), shipped in
/// `assets/mtcnn/` beside the three.
pub const SECOND_OPINION_FILE: &str = "onet_faces.safetensors";

/// The close look's windows: squares of these fractions of the frame's shorter side, a quarter
/// of a side apart (84 windows on a square frame, 130 on a 4:3 one).
const CLOSE_LOOK_FRACTIONS: [f32; 4] = [1.0, 0.75, 0.55, 0.4];
/// The most windows the close look gives one of its fractions (a square frame's smallest gives 49, a
/// 16:9 one's 105).
const CLOSE_LOOK_MAX_WINDOWS: usize = 160;
/// O-Net score a close-look window needs to be looked at again about the box it regressed.
const CLOSE_LOOK_FIRST: f32 = 0.5;
/// The windows the pretrained O-Net scores a close-look face on, as sides of the face's box; its
/// best score there must reach [`DetectorConfig::close_look_floor`]. The pretrained network's
/// window of choice is not always the tuned one's: on the 2,000 FER2013 training faces of the
/// `missed_faces` example, the detector misses 33 with these three where it missed 36 with the one
/// window of 0.9, and raises no face on the 152 faceless frames the cascade alone does not.
const CLOSE_LOOK_FLOOR_SIDES: [f32; 3] = [0.9, 1.1, 1.3];

/// MTCNN on a burn device.
#[derive(Debug, Clone)]
pub struct FaceDetector {
    pnet: PNet,
    rnet: RNet,
    onet: ONet,
    /// O-Net fine-tuned on faces that fill the picture, for the close look
    /// ([`DetectorConfig::close_look`]); loaded by [`Self::with_second_opinion`].
    second_opinion: Option<ONet>,
    device: Device,
    config: DetectorConfig,
}

impl FaceDetector {
    /// Builds the three networks on `device` and loads their weights.
    pub fn new(weights: &MtcnnWeights, config: DetectorConfig, device: &Device) -> Result<Self, WeightsError> {
        Ok(FaceDetector {
            pnet: load_pytorch_safetensors(PNet::new(device), &weights.pnet, WEIGHT_FILES[0])?,
            rnet: load_pytorch_safetensors(RNet::new(device), &weights.rnet, WEIGHT_FILES[1])?,
            onet: load_pytorch_safetensors(ONet::new(device), &weights.onet, WEIGHT_FILES[2])?,
            second_opinion: None,
            device: device.clone(),
            config,
        })
    }

    /// Loads the second opinion's O-Net (`bytes` of [`SECOND_OPINION_FILE`]), which the close
    /// look asks where the cascade finds no face ([`DetectorConfig::close_look`]). Without it
    /// the close look is skipped.
    pub fn with_second_opinion(mut self, bytes: &[u8]) -> Result<Self, WeightsError> {
        self.second_opinion = Some(load_pytorch_safetensors(ONet::new(&self.device), bytes, SECOND_OPINION_FILE)?);
        Ok(self)
    }

    /// Whether the close look can run: the second opinion's weights are loaded.
    pub fn has_second_opinion(&self) -> bool {
        self.second_opinion.is_some()
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    pub fn set_config(&mut self, config: DetectorConfig) {
        self.config = config;
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn pnet(&self) -> &PNet {
        &self.pnet
    }

    pub fn rnet(&self) -> &RNet {
        &self.rnet
    }

    pub fn onet(&self) -> &ONet {
        &self.onet
    }

    /// Detects faces, blocking until done (native only: the browser must use
    /// [`Self::detect_async`], because WebGPU read-back cannot block).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn detect(&self, frame: &Frame) -> Result<Vec<Face>, DetectError> {
        pollster::block_on(self.detect_async(frame))
    }

    /// Follows faces with the detector's own settings, blocking until done (native only; see
    /// [`Self::follow_with`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn follow(&self, frame: &Frame, priors: &[[f32; 4]]) -> Result<Vec<Face>, DetectError> {
        pollster::block_on(self.follow_with(frame, priors, &self.config))
    }

    /// Follows faces and searches the rest of the frame with the detector's own settings,
    /// blocking until done (native only; see [`Self::refresh_with`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn refresh(&self, frame: &Frame, priors: &[[f32; 4]]) -> Result<Vec<Face>, DetectError> {
        pollster::block_on(self.refresh_with(frame, priors, &self.config))
    }

    /// Detects faces, best score first.
    pub async fn detect_async(&self, frame: &Frame) -> Result<Vec<Face>, DetectError> {
        self.detect_with(frame, &self.config).await
    }

    /// Detects faces with other settings than the detector's own (a per-request minimum face
    /// size, say), without copying the networks.
    pub async fn detect_with(&self, frame: &Frame, cfg: &DetectorConfig) -> Result<Vec<Face>, DetectError> {
        self.detect_sharing(frame, cfg, None::<&NoHelper>).await
    }

    /// As [`Self::detect_with`], with part of each stage run by `helper` meanwhile (see
    /// [`shared`]): the same faces, in less time where the helper has a core of its own.
    pub async fn detect_sharing(
        &self,
        frame: &Frame,
        cfg: &DetectorConfig,
        helper: Option<&impl Helper>,
    ) -> Result<Vec<Face>, DetectError> {
        cfg.validate()?;
        let min_face = cfg.min_face_in(frame.width(), frame.height());
        let (working, kx, ky) = working_copy(frame, min_face, None)?;
        let faces = self.cascade(frame, &working, (kx, ky), min_face, cfg, helper).await?;
        let faces = match cfg.turned_look {
            Some(score) if faces.is_empty() => {
                self.turned_look(&working, (kx, ky), min_face, score, cfg, helper).await?
            }
            _ => faces,
        };
        match (cfg.close_look, &self.second_opinion) {
            (Some(score), Some(net)) if faces.is_empty() => self.close_look(net, &working, (kx, ky), score, cfg).await,
            _ => Ok(faces),
        }
    }

    /// The close look ([`DetectorConfig::close_look`]): the second opinion's O-Net on a grid of
    /// large square windows of `working` ([`CLOSE_LOOK_FRACTIONS`]), then once more on a square
    /// about each box it regressed from a window it scored above [`CLOSE_LOOK_FIRST`]; the faces
    /// it then scores at `score` with their landmarks where a face's are, and that the pretrained
    /// O-Net scores at least [`DetectorConfig::close_look_floor`] there, in the frame's pixels.
    async fn close_look(
        &self,
        net: &ONet,
        working: &Frame,
        (kx, ky): (f32, f32),
        score: f32,
        cfg: &DetectorConfig,
    ) -> Result<Vec<Face>, DetectError> {
        let grid = close_look_windows(working.width() as f32, working.height() as f32);
        let first = DetectorConfig { thresholds: [0.0, 0.0, CLOSE_LOOK_FIRST], second_look: None, ..cfg.clone() };
        let seen = self.stage3_with(net, working, (1.0, 1.0), grid, &first, None::<&NoHelper>).await?;
        if seen.is_empty() {
            return Ok(seen);
        }
        let boxes: Vec<[f32; 4]> = seen.iter().map(|f| f.bbox).collect();
        let last = DetectorConfig { thresholds: [0.0, 0.0, score], second_look: None, ..cfg.clone() };
        let faces =
            self.stage3_with(net, working, (1.0, 1.0), follow_windows(&boxes), &last, None::<&NoHelper>).await?;
        let mut kept = Vec::new();
        for face in faces.into_iter().filter(turn::plausible_landmarks) {
            let windows: Vec<Candidate> =
                CLOSE_LOOK_FLOOR_SIDES.iter().flat_map(|&k| windows_about(&[face.bbox], k)).collect();
            let pretrained = self.onet_scores(&self.onet, working, (1.0, 1.0), &windows, cfg).await?;
            if pretrained.iter().any(|(c, _)| c.score >= cfg.close_look_floor) {
                kept.push(face.scaled(1.0 / kx, 1.0 / ky));
            }
        }
        Ok(kept)
    }

    /// Runs a part of a detection shared by another detector (see [`shared`]); `working` is the
    /// picture the part reads.
    pub async fn run_part(&self, working: &Frame, part: &Part) -> Result<PartResult, DetectError> {
        part.config.validate()?;
        Ok(match &part.work {
            Work::Pnet(levels) => {
                PartResult::Candidates(self.pnet_levels(part.frame_size, working, levels, &part.config).await?)
            }
            Work::Rnet(c) => PartResult::Candidates(self.rnet_scores(working, part.scale, c, &part.config).await?),
            Work::Onet(c) => {
                PartResult::Scored(self.onet_scores(&self.onet, working, part.scale, c, &part.config).await?)
            }
        })
    }

    /// The three stages on `frame`, whose pixels are read from `working` (the frame scaled by
    /// `scale`).
    async fn cascade(
        &self,
        frame: &Frame,
        working: &Frame,
        scale: (f32, f32),
        min_face: f32,
        cfg: &DetectorConfig,
        helper: Option<&impl Helper>,
    ) -> Result<Vec<Face>, DetectError> {
        let candidates = self.stage1(frame, working, min_face, cfg, helper).await?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let candidates = self.stage2(working, scale, candidates, cfg, helper).await?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        self.stage3(working, scale, candidates, cfg, helper).await
    }

    /// The turned look ([`DetectorConfig::turned_look`]): the cascade on `working` rotated by each
    /// of [`TURNED_LOOK_ANGLES`], the faces kept at `score` and with plausible landmarks, in the
    /// frame's pixels (the working copy scaled by `1 / scale`), best score first.
    async fn turned_look(
        &self,
        working: &Frame,
        (kx, ky): (f32, f32),
        min_face: f32,
        score: f32,
        cfg: &DetectorConfig,
        helper: Option<&impl Helper>,
    ) -> Result<Vec<Face>, DetectError> {
        let fill = match cfg.edges.padding {
            Some(Padding::Fill(v)) => v,
            _ => 128,
        };
        let mut found = Vec::new();
        for degrees in TURNED_LOOK_ANGLES {
            let turned = turn::turn(working, degrees, fill);
            let faces =
                self.cascade(&turned.frame, &turned.frame, (1.0, 1.0), min_face * kx.max(ky), cfg, helper).await?;
            found.extend(
                faces
                    .iter()
                    .filter(|f| f.score >= score && turn::plausible_landmarks(f))
                    .map(|f| turned.face_back(f).scaled(1.0 / kx, 1.0 / ky)),
            );
        }
        let boxes: Vec<Candidate> = found.iter().map(|f| Candidate::of_box(f.bbox, f.score)).collect();
        let mut faces: Vec<Face> = nms(&boxes, 0.5, Overlap::Min).into_iter().map(|i| found[i].clone()).collect();
        faces.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(faces)
    }

    /// Follows faces found in an earlier frame of the same video: O-Net alone looks at a square
    /// window about each of `priors` (boxes `[x1, y1, x2, y2]` in `frame`'s pixels, usually the
    /// faces of the latest answer) and gives the face's new box, score and landmarks there.
    ///
    /// A face moves little between two video frames, so the window O-Net needs is known without
    /// P-Net's pyramid and R-Net: that is most of the cascade's cost (a 480×360 frame: about
    /// 40 ms for the cascade against 2–3 ms here, in the browser's CPU path). Each face is
    /// refined by O-Net's box regression on every call, so a face that moves is followed from
    /// frame to frame. A face that moved out of its window, turned away or left scores below
    /// O-Net's threshold and is not returned: the caller then runs [`Self::detect_with`] again,
    /// which it must also do now and then to find faces that entered the frame. The windows are
    /// cut from the same working copy the cascade uses, so a followed face gets the box and
    /// landmarks the cascade would give it.
    pub async fn follow_with(
        &self,
        frame: &Frame,
        priors: &[[f32; 4]],
        cfg: &DetectorConfig,
    ) -> Result<Vec<Face>, DetectError> {
        cfg.validate()?;
        let priors = follow_windows(priors);
        if priors.is_empty() {
            return Ok(Vec::new());
        }
        let min_face = cfg.min_face_in(frame.width(), frame.height());
        let (working, kx, ky) = working_copy(frame, min_face, Some(&priors))?;
        self.stage3(&working, (kx, ky), priors, cfg, None::<&NoHelper>).await
    }

    /// Follows the faces of `priors` as [`Self::follow_with`] does, and searches the rest of the
    /// frame for faces that came into view, as [`Self::detect_with`] would: the periodic search of
    /// a live video while it holds faces.
    ///
    /// The whole cascade runs, but the candidates P-Net finds on or about a face just followed
    /// go no further: they are that face, at other scales and offsets, and were most of what
    /// R-Net and O-Net spent on such a frame. A prior whose face was not found again does not
    /// shield its candidates, so a face that moved out of its window is searched for like any
    /// other. Faces come back best score first, the followed ones and the new ones together.
    pub async fn refresh_with(
        &self,
        frame: &Frame,
        priors: &[[f32; 4]],
        cfg: &DetectorConfig,
    ) -> Result<Vec<Face>, DetectError> {
        cfg.validate()?;
        let min_face = cfg.min_face_in(frame.width(), frame.height());
        // One working copy, whole, for the followed windows and the search alike.
        let (working, kx, ky) = working_copy(frame, min_face, None)?;
        let priors = follow_windows(priors);
        let followed = if priors.is_empty() {
            Vec::new()
        } else {
            self.stage3(&working, (kx, ky), priors, cfg, None::<&NoHelper>).await?
        };
        let held: Vec<Candidate> = followed.iter().map(|f| Candidate::of_box(f.bbox, f.score)).collect();
        // Over half of a candidate's window (or of the face's box, the smaller of the two) on a
        // followed face: a window of that face.
        let on_held = |c: &Candidate| held.iter().any(|h| overlap_of(h, c, Overlap::Min) > 0.5);
        let mut faces = followed.clone();
        let candidates: Vec<Candidate> = self
            .stage1(frame, &working, min_face, cfg, None::<&NoHelper>)
            .await?
            .into_iter()
            .filter(|c| !on_held(c))
            .collect();
        if !candidates.is_empty() {
            let candidates: Vec<Candidate> = self
                .stage2(&working, (kx, ky), candidates, cfg, None::<&NoHelper>)
                .await?
                .into_iter()
                .filter(|c| !on_held(c))
                .collect();
            if !candidates.is_empty() {
                for face in self.stage3(&working, (kx, ky), candidates, cfg, None::<&NoHelper>).await? {
                    // The same rule as the second look's: a face mostly on one already held is it.
                    let c = Candidate::of_box(face.bbox, face.score);
                    if held.iter().all(|h| overlap_of(h, &c, Overlap::Min) <= 0.7) {
                        faces.push(face);
                    }
                }
            }
        }
        faces.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(faces)
    }

    /// P-Net over the scale pyramid of `frame`, whose levels are made from `working` (the frame
    /// itself or a smaller copy); candidates are in `frame`'s pixels.
    async fn stage1(
        &self,
        frame: &Frame,
        working: &Frame,
        min_face: f32,
        cfg: &DetectorConfig,
        helper: Option<&impl Helper>,
    ) -> Result<Vec<Candidate>, DetectError> {
        let size = (frame.width(), frame.height());
        let levels = pyramid_levels(size, min_face, cfg);
        // The first level is about half of the pyramid's area (the scale factor squared is about
        // 1/2), so it stays here and the helper takes the others.
        let all = match helper {
            Some(h) if levels.len() > 1 => {
                let rest = Part {
                    frame_size: size,
                    scale: (1.0, 1.0),
                    config: cfg.clone(),
                    work: Work::Pnet(levels[1..].to_vec()),
                };
                let pending = h.start(working, rest);
                let mut all = self.pnet_levels(size, working, &levels[..1], cfg).await?;
                all.extend(match pending.await {
                    Ok(PartResult::Candidates(c)) => c,
                    _ => self.pnet_levels(size, working, &levels[1..], cfg).await?,
                });
                all
            }
            _ => self.pnet_levels(size, working, &levels, cfg).await?,
        };
        let keep = nms(&all, 0.7, Overlap::Union);
        let (mut passed, mut rescued): (Vec<Candidate>, Vec<Candidate>) =
            keep.into_iter().map(|i| square(&regress(&all[i], all[i].reg, false))).partition(|c| !c.rescued);
        best_first(&mut rescued, SECOND_LOOK_CANDIDATES[0]);
        passed.extend(rescued);
        Ok(passed)
    }

    /// P-Net over the given levels of the pyramid of a frame of `size`, made from `working`: each
    /// level's candidates after its own NMS, in `frame`'s pixels, level after level.
    async fn pnet_levels(
        &self,
        (w, h): (u32, u32),
        working: &Frame,
        levels: &[(f32, bool)],
        cfg: &DetectorConfig,
    ) -> Result<Vec<Candidate>, DetectError> {
        let (w, h) = (w as f32, h as f32);
        let fill = cfg.edges.padding.unwrap_or(Padding::Fill(128));
        let floor = match cfg.second_look {
            Some(_) => cfg.thresholds[0].min(SECOND_LOOK_FLOOR),
            None => cfg.thresholds[0],
        };
        let mut all = Vec::new();
        for &(scale, padded) in levels {
            let sh = (h * scale + 1.0) as usize;
            let sw = (w * scale + 1.0) as usize;
            let mut input = Vec::with_capacity(3 * sh * sw);
            resize_area_into(working, (0, 0, working.width() as usize, working.height() as usize), sw, sh, &mut input);
            let (input, sw, sh, pad) = if padded {
                let p = PYRAMID_PADDING;
                (pad_planar(&input, sw, sh, p, fill), sw + 2 * p, sh + 2 * p, p as f32)
            } else {
                (input, sw, sh, 0.0)
            };
            let x = Tensor::<4>::from_data(TensorData::new(input, [1, 3, sh, sw]), &self.device);
            let (reg, prob) = self.pnet.forward(x);
            let [oh, ow] = [prob.dims()[2], prob.dims()[3]];
            let face_prob = prob.narrow(1, 1, 1);
            let [reg, face_prob] = self.read([reg.flatten::<1>(0, 3), face_prob.flatten::<1>(0, 3)]).await?;
            let mut level = Vec::new();
            let mut below = Vec::new();
            for y in 0..oh {
                for x in 0..ow {
                    let p = face_prob[y * ow + x];
                    if p >= floor {
                        let at = |c: usize| reg[c * oh * ow + y * ow + x];
                        let c = Candidate {
                            x1: (((2 * x + 1) as f32 - pad) / scale).floor(),
                            y1: (((2 * y + 1) as f32 - pad) / scale).floor(),
                            x2: (((2 * x + 12) as f32 - pad) / scale).floor(),
                            y2: (((2 * y + 12) as f32 - pad) / scale).floor(),
                            score: p,
                            reg: [at(0), at(1), at(2), at(3)],
                            rescued: p < cfg.thresholds[0],
                        };
                        if c.rescued {
                            below.push(c);
                        } else {
                            level.push(c);
                        }
                    }
                }
            }
            // The second look's candidates come after the others and score lower, so the NMS
            // never lets them displace one that passed the threshold.
            best_first(&mut below, SECOND_LOOK_PER_LEVEL);
            level.extend(below);
            // Per-scale NMS keeps candidates in the order torchvision returns them (by score).
            all.extend(nms(&level, 0.5, Overlap::Union).into_iter().map(|i| level[i]));
        }
        Ok(all)
    }

    /// R-Net on 24×24 crops of the candidates, cut from `working`, which is the frame scaled by
    /// `scale` (x, y); candidates stay in the frame's pixels.
    async fn stage2(
        &self,
        working: &Frame,
        scale: (f32, f32),
        candidates: Vec<Candidate>,
        cfg: &DetectorConfig,
        helper: Option<&impl Helper>,
    ) -> Result<Vec<Candidate>, DetectError> {
        let scored = match helper {
            Some(h) if candidates.len() >= SHARED_RNET_MIN => {
                let half = candidates.len() / 2;
                let part = Part {
                    frame_size: (0, 0),
                    scale,
                    config: cfg.clone(),
                    work: Work::Rnet(candidates[half..].to_vec()),
                };
                let pending = h.start(working, part);
                let mut scored = self.rnet_scores(working, scale, &candidates[..half], cfg).await?;
                scored.extend(match pending.await {
                    Ok(PartResult::Candidates(c)) => c,
                    _ => self.rnet_scores(working, scale, &candidates[half..], cfg).await?,
                });
                scored
            }
            _ => self.rnet_scores(working, scale, &candidates, cfg).await?,
        };
        let mut passed = Vec::new();
        let mut below = Vec::new();
        for c in scored {
            if c.score > cfg.thresholds[1] && !c.rescued {
                passed.push(c);
            } else if cfg.second_look.is_some() && c.score >= SECOND_LOOK_FLOOR {
                below.push(Candidate { rescued: true, ..c });
            }
        }
        let keep = nms(&passed, 0.7, Overlap::Union);
        let mut out: Vec<Candidate> =
            keep.into_iter().map(|i| square(&regress(&passed[i], passed[i].reg, true))).collect();
        let mut rescued: Vec<Candidate> = nms(&below, 0.7, Overlap::Union)
            .into_iter()
            .map(|i| square(&regress(&below[i], below[i].reg, true)))
            .collect();
        best_first(&mut rescued, SECOND_LOOK_CANDIDATES[1]);
        out.extend(rescued);
        Ok(out)
    }

    /// R-Net's score and box regression for each candidate whose window is not empty, in order.
    async fn rnet_scores(
        &self,
        working: &Frame,
        scale: (f32, f32),
        candidates: &[Candidate],
        cfg: &DetectorConfig,
    ) -> Result<Vec<Candidate>, DetectError> {
        let (kept, input) = self.crops(working, scale, candidates, 24, cfg.edges.padding);
        if kept.is_empty() {
            return Ok(Vec::new());
        }
        let n = kept.len();
        let x = Tensor::<4>::from_data(TensorData::new(input, [n, 3, 24, 24]), &self.device);
        let (reg, prob) = self.rnet.forward(x);
        let [reg, prob] = self.read([reg.flatten::<1>(0, 1), prob.flatten::<1>(0, 1)]).await?;
        Ok(kept
            .iter()
            .enumerate()
            .map(|(k, &i)| Candidate {
                score: prob[k * 2 + 1],
                reg: [reg[k * 4], reg[k * 4 + 1], reg[k * 4 + 2], reg[k * 4 + 3]],
                ..candidates[i]
            })
            .collect())
    }

    /// O-Net on 48×48 crops cut from `frame` scaled by `scale`: final scores, boxes and
    /// landmarks, in the unscaled frame's pixels.
    async fn stage3(
        &self,
        frame: &Frame,
        scale: (f32, f32),
        candidates: Vec<Candidate>,
        cfg: &DetectorConfig,
        helper: Option<&impl Helper>,
    ) -> Result<Vec<Face>, DetectError> {
        self.stage3_with(&self.onet, frame, scale, candidates, cfg, helper).await
    }

    /// [`Self::stage3`] with `net` as O-Net.
    async fn stage3_with(
        &self,
        net: &ONet,
        frame: &Frame,
        scale: (f32, f32),
        candidates: Vec<Candidate>,
        cfg: &DetectorConfig,
        helper: Option<&impl Helper>,
    ) -> Result<Vec<Face>, DetectError> {
        let scored = match helper {
            Some(h) if candidates.len() >= SHARED_ONET_MIN => {
                let half = candidates.len() / 2;
                let part = Part {
                    frame_size: (0, 0),
                    scale,
                    config: cfg.clone(),
                    work: Work::Onet(candidates[half..].to_vec()),
                };
                let pending = h.start(frame, part);
                let mut scored = self.onet_scores(net, frame, scale, &candidates[..half], cfg).await?;
                scored.extend(match pending.await {
                    Ok(PartResult::Scored(c)) => c,
                    _ => self.onet_scores(net, frame, scale, &candidates[half..], cfg).await?,
                });
                scored
            }
            _ => self.onet_scores(net, frame, scale, &candidates, cfg).await?,
        };
        let mut passed = Vec::new();
        let mut points = Vec::new();
        for (c, m) in scored {
            let threshold = if c.rescued { cfg.second_look.unwrap_or(f32::INFINITY) } else { cfg.thresholds[2] };
            if c.score > threshold {
                let bw = c.x2 - c.x1 + 1.0;
                let bh = c.y2 - c.y1 + 1.0;
                let mut lm = [[0f32; 2]; 5];
                for (j, p) in lm.iter_mut().enumerate() {
                    *p = [bw * m[j] + c.x1 - 1.0, bh * m[j + 5] + c.y1 - 1.0];
                }
                passed.push(regress(&c, c.reg, true));
                points.push(lm);
            }
        }
        let face = |i: usize| {
            let c: Candidate = passed[i];
            Face { bbox: [c.x1, c.y1, c.x2, c.y2], score: c.score, landmarks: points[i] }
        };
        // The faces of the second look only add to the others: one that overlaps a face found
        // the usual way is the same face.
        let (usual, second): (Vec<usize>, Vec<usize>) = (0..passed.len()).partition(|&i| !passed[i].rescued);
        let pick = |which: &[usize]| -> Vec<usize> {
            let boxes: Vec<Candidate> = which.iter().map(|&i| passed[i]).collect();
            nms(&boxes, 0.7, Overlap::Min).into_iter().map(|k| which[k]).collect()
        };
        let mut keep = pick(&usual);
        let usual_faces = keep.len();
        for i in pick(&second) {
            if keep[..usual_faces].iter().all(|&j| overlap_of(&passed[j], &passed[i], Overlap::Min) <= 0.7) {
                keep.push(i);
            }
        }
        let mut faces: Vec<Face> = keep.into_iter().map(face).collect();
        faces.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(faces)
    }

    /// O-Net's score, box regression and landmarks (relative to the window) for each candidate
    /// whose window is not empty, in order.
    async fn onet_scores(
        &self,
        net: &ONet,
        frame: &Frame,
        scale: (f32, f32),
        candidates: &[Candidate],
        cfg: &DetectorConfig,
    ) -> Result<Vec<(Candidate, [f32; 10])>, DetectError> {
        let (kept, input) = self.crops(frame, scale, candidates, 48, cfg.edges.padding);
        if kept.is_empty() {
            return Ok(Vec::new());
        }
        let n = kept.len();
        let x = Tensor::<4>::from_data(TensorData::new(input, [n, 3, 48, 48]), &self.device);
        let (reg, marks, prob) = net.forward(x);
        let [reg, marks, prob] =
            self.read([reg.flatten::<1>(0, 1), marks.flatten::<1>(0, 1), prob.flatten::<1>(0, 1)]).await?;
        Ok(kept
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                let c = Candidate {
                    score: prob[k * 2 + 1],
                    reg: [reg[k * 4], reg[k * 4 + 1], reg[k * 4 + 2], reg[k * 4 + 3]],
                    ..candidates[i]
                };
                let mut m = [0f32; 10];
                m.copy_from_slice(&marks[k * 10..k * 10 + 10]);
                (c, m)
            })
            .collect())
    }

    /// Area-resized, normalised crops of the candidates' windows (scaled by `scale` into
    /// `frame`'s pixels), stacked NCHW; returns the indices of the candidates whose window is not
    /// empty.
    fn crops(
        &self,
        frame: &Frame,
        scale: (f32, f32),
        candidates: &[Candidate],
        size: usize,
        padding: Option<Padding>,
    ) -> (Vec<usize>, Vec<f32>) {
        let mut kept = Vec::new();
        let mut input = Vec::with_capacity(candidates.len() * 3 * size * size);
        for (i, c) in candidates.iter().enumerate() {
            let (kx, ky) = scale;
            let c = if scale == (1.0, 1.0) {
                *c
            } else {
                Candidate { x1: c.x1 * kx, y1: c.y1 * ky, x2: c.x2 * kx, y2: c.y2 * ky, ..*c }
            };
            let cut = match padding {
                None => crop_window(&c, frame.width(), frame.height())
                    .map(|window| resize_area_into(frame, window, size, size, &mut input))
                    .is_some(),
                Some(padding) => resize_area_padded_into(frame, padded_window(&c), size, size, padding, &mut input),
            };
            if cut {
                kept.push(i);
            }
        }
        (kept, input)
    }

    /// Reads tensors back in one transaction (one GPU round trip).
    async fn read<const N: usize>(&self, tensors: [Tensor<1>; N]) -> Result<[Vec<f32>; N], DetectError> {
        let mut tx = Transaction::default();
        for t in tensors {
            tx = tx.register(t);
        }
        let data = tx
            .execute_async()
            .await
            .map_err(|e| DetectError::Backend(format!("{:?}", self.device), format!("{e:?}")))?;
        let mut out: Vec<Vec<f32>> = Vec::with_capacity(N);
        for d in data {
            out.push(
                d.convert::<f32>()
                    .try_into_vec::<f32>()
                    .map_err(|e| DetectError::Backend(format!("{:?}", self.device), format!("{e:?}")))?,
            );
        }
        out.try_into().map_err(|_| DetectError::Backend(format!("{:?}", self.device), "result count".into()))
    }
}

/// The copy of `frame` the cascade reads, and its scale (x, y) relative to `frame`.
///
/// In it the smallest face searched for is 24 pixels (R-Net's input): the pyramid is then made
/// from a bounded image instead of the whole frame, and a large photo gives what the same photo
/// at that size gives (O-Net cutting its crops from the sharper frame instead raises buttons and
/// patterns the photo at its own scale never shows). Faces come back in the frame's pixels.
///
/// With `about`, only the part O-Net reads for those candidates (in `frame`'s pixels) is made;
/// the rest stays black and is never read. Following a face in a 640×480 frame took 5.2 ms
/// natively, 3.9 ms of it making the whole copy.
/// The close look's windows over a `w × h` frame: for each of [`CLOSE_LOOK_FRACTIONS`], squares
/// of that fraction of the shorter side, spread evenly at most a quarter of a side apart and
/// reaching both edges. Windows under R-Net's 24 pixels hold no face the cascade could not see,
/// and a fraction that would need more than [`CLOSE_LOOK_MAX_WINDOWS`] windows (a strip far
/// longer than it is wide) is left out, so the look's cost stays bounded.
fn close_look_windows(w: f32, h: f32) -> Vec<Candidate> {
    let mut out = Vec::new();
    for f in CLOSE_LOOK_FRACTIONS {
        let side = f * w.min(h);
        if side < 24.0 {
            continue;
        }
        let steps = |len: f32| ((len - side) / (side / 4.0)).ceil().max(0.0) as usize + 1;
        if steps(w) * steps(h) > CLOSE_LOOK_MAX_WINDOWS {
            continue;
        }
        let at = |i: usize, n: usize, len: f32| {
            if n == 1 {
                (len - side) / 2.0
            } else {
                i as f32 * (len - side) / (n - 1) as f32
            }
        };
        let (nx, ny) = (steps(w), steps(h));
        for iy in 0..ny {
            for ix in 0..nx {
                let (x, y) = (at(ix, nx, w), at(iy, ny, h));
                out.push(Candidate::of_box([x, y, x + side, y + side], 1.0));
            }
        }
    }
    out
}

/// The pyramid levels P-Net scans in a frame of `size` for faces from `min_face` pixels: each
/// level's scale, and whether it is searched on a padded copy.
fn pyramid_levels((w, h): (u32, u32), min_face: f32, cfg: &DetectorConfig) -> Vec<(f32, bool)> {
    let m = 12.0 / min_face;
    let mut minl = (w as f32).min(h as f32) * m;
    let mut levels = Vec::new();
    let mut scale = m;
    let padded = cfg.edges.padded_pyramid;
    let smallest = if padded { PADDED_MIN_SIDE } else { 12.0 };
    while minl >= smallest {
        levels.push((scale, padded && minl < PADDED_BELOW_SIDE));
        scale *= cfg.scale_factor;
        minl *= cfg.scale_factor;
    }
    levels
}

fn working_copy<'a>(
    frame: &'a Frame,
    min_face: f32,
    about: Option<&[Candidate]>,
) -> Result<(Cow<'a, Frame>, f32, f32), DetectError> {
    let k = (24.0 / min_face).min(1.0);
    let working = if k < 1.0 {
        let (w, h) = (frame.width(), frame.height());
        let (ww, wh) = (((w as f32 * k).ceil() as u32).max(1), ((h as f32 * k).ceil() as u32).max(1));
        let (kx, ky) = (ww as f32 / w as f32, wh as f32 / h as f32);
        // The output pixels the crops of `about` read, with two pixels to spare on each side.
        let region = match about {
            None => (0, 0, ww as usize, wh as usize),
            Some(candidates) => candidates.iter().fold((usize::MAX, usize::MAX, 0, 0), |r, c| {
                let lo = |v: f32, k: f32| ((v * k).floor() - 2.0).max(0.0) as usize;
                let hi = |v: f32, k: f32| ((v * k).ceil() + 2.0).max(0.0) as usize;
                (r.0.min(lo(c.x1, kx)), r.1.min(lo(c.y1, ky)), r.2.max(hi(c.x2, kx)), r.3.max(hi(c.y2, ky)))
            }),
        };
        let rgb = resample::downscale_rgb_region(
            frame.rgb(),
            (w as usize, h as usize, 3),
            (ww as usize, wh as usize),
            region,
        );
        Cow::Owned(Frame::from_rgb(ww, wh, rgb).map_err(|e| DetectError::Config(e.to_string()))?)
    } else {
        Cow::Borrowed(frame)
    };
    let kx = working.width() as f32 / frame.width() as f32;
    let ky = working.height() as f32 / frame.height() as f32;
    Ok((working, kx, ky))
}

/// The detector checking itself against reference outputs (`assets/mtcnn/golden_outputs.json`):
/// the web app runs it on the user's backend, so a WebGPU driver that computes wrongly is caught.
pub mod selftest {
    use burn::prelude::*;
    use serde::{Deserialize, Serialize};

    use super::FaceDetector;

    /// Largest absolute deviation of each network's outputs from the reference.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    pub struct SelfTest {
        pub pnet: f32,
        pub rnet: f32,
        pub onet: f32,
    }

    /// The reference's synthetic input, `pixel[c][h][w] = (31c + 17h + 7w + 11hw) mod 256`,
    /// normalised, NCHW.
    pub fn synthetic_input(h: usize, w: usize) -> Vec<f32> {
        let mut v = Vec::with_capacity(3 * h * w);
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    v.push(super::resample::normalise(((31 * c + 17 * y + 7 * x + 11 * y * x) % 256) as f32));
                }
            }
        }
        v
    }

    fn flat(v: &serde_json::Value, out: &mut Vec<f32>) {
        match v {
            serde_json::Value::Array(a) => a.iter().for_each(|x| flat(x, out)),
            serde_json::Value::Number(n) => out.push(n.as_f64().unwrap_or(f64::NAN) as f32),
            _ => out.push(f32::NAN),
        }
    }

    fn deviation(got: &[f32], golden: &serde_json::Value) -> f32 {
        let mut want = Vec::new();
        flat(golden, &mut want);
        if want.len() != got.len() {
            return f32::INFINITY;
        }
        got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0.0, f32::max)
    }

    async fn read(t: Tensor<2>) -> Result<Vec<f32>, String> {
        let data = t.into_data_async().await.map_err(|e| format!("{e:?}"))?;
        data.convert::<f32>().try_into_vec::<f32>().map_err(|e| format!("{e:?}"))
    }

    /// Runs the three networks on the synthetic inputs and compares with `golden`.
    pub async fn run(detector: &FaceDetector, golden: &serde_json::Value) -> Result<SelfTest, String> {
        let device = detector.device();
        let input = |h, w| Tensor::<4>::from_data(TensorData::new(synthetic_input(h, w), [1, 3, h, w]), device);
        let (reg, prob) = detector.pnet().forward(input(16, 22));
        let g = &golden["pnet_16x22"];
        let pnet = deviation(&read(reg.reshape([1, -1])).await?, &g["reg_chw"])
            .max(deviation(&read(prob.narrow(1, 1, 1).reshape([1, -1])).await?, &g["prob_face_hw"]));
        let (reg, prob) = detector.rnet().forward(input(24, 24));
        let g = &golden["rnet_24x24"];
        let rnet = deviation(&read(reg).await?, &g["reg"]).max(deviation(&read(prob).await?, &g["prob"]));
        let (reg, marks, prob) = detector.onet().forward(input(48, 48));
        let g = &golden["onet_48x48"];
        let onet = deviation(&read(reg).await?, &g["reg"])
            .max(deviation(&read(marks).await?, &g["landmarks"]))
            .max(deviation(&read(prob).await?, &g["prob"]));
        Ok(SelfTest { pnet, rnet, onet })
    }
}
