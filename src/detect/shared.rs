//! One detection shared between two detectors: a second worker, where the machine has a core to
//! spare, runs part of each stage of the cascade while the first runs the rest.
//!
//! A photo's time goes to the cascade (P-Net over the pyramid, then R-Net and O-Net over the
//! candidates), and each stage is many independent pieces of work: pyramid levels, candidate
//! windows. [`super::FaceDetector::detect_sharing`] hands one part of each stage to a
//! [`Helper`] and runs the other part itself meanwhile; the parts are joined in the order the
//! unshared cascade makes them, so the faces are the same, bit for bit. A helper that fails or is
//! gone costs only time: its part is then run here.

use std::future::Future;

use serde::{Deserialize, Serialize};

use super::boxes::Candidate;
use super::{DetectError, DetectorConfig};
use crate::frame::Frame;

/// Candidates below this many go to R-Net in one piece: a handful costs less than the trip to
/// a helper and back.
pub(super) const SHARED_RNET_MIN: usize = 32;
/// The same for O-Net, whose crops are four times as large.
pub(super) const SHARED_ONET_MIN: usize = 8;

/// One part of a stage, for a helper: the pixels it reads travel beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Part {
    /// The frame's size (the pyramid levels are scaled from it; `(0, 0)` for R-Net and O-Net).
    pub frame_size: (u32, u32),
    /// The pixels' scale: the working copy is the frame scaled by this.
    pub scale: (f32, f32),
    pub config: DetectorConfig,
    pub work: Work,
}

/// What a part asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Work {
    /// P-Net over these pyramid levels (scale, searched on a padded copy).
    Pnet(Vec<(f32, bool)>),
    /// R-Net's scores for these candidates.
    Rnet(Vec<Candidate>),
    /// O-Net's scores and landmarks for these candidates.
    Onet(Vec<Candidate>),
}

/// What a part gives back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PartResult {
    /// P-Net's candidates (each level's after its NMS) or R-Net's scored candidates.
    Candidates(Vec<Candidate>),
    /// O-Net's scored candidates, each with its ten landmark coordinates relative to its window.
    Scored(Vec<(Candidate, [f32; 10])>),
}

/// Another detector that runs parts of a detection.
pub trait Helper {
    /// The part's answer, or why there is none (the part then runs here).
    type Pending: Future<Output = Result<PartResult, DetectError>>;

    /// Starts `part` on the helper's side and returns at once: the caller runs its own part before
    /// it awaits this one's. `working` is the picture the part reads.
    fn start(&self, working: &Frame, part: Part) -> Self::Pending;
}

/// No helper: every part runs here.
pub enum NoHelper {}

impl Helper for NoHelper {
    type Pending = std::future::Ready<Result<PartResult, DetectError>>;

    fn start(&self, _: &Frame, _: Part) -> Self::Pending {
        match *self {}
    }
}
