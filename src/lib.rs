//! mien: facial-expression recognition that runs on the user's own machine.
//!
//! The same code turns pixels into faces everywhere — the trainer, the CLI, the browser worker:
//! bytes → [`Frame`] → [`Face`]s ([`FaceDetector`]) → aligned [`FaceCrop`]s ([`align`]) →
//! emotions ([`ExpressionRecognizer`] runs the whole path). The crate knows nothing of files or the DOM; its edges take bytes.

pub mod align;
pub mod classify;
pub mod detect;
pub mod emotion;
pub mod frame;
pub mod metrics;
pub mod pipeline;
pub mod track;
pub mod weights;

pub use align::{crop_face, CropConfig, FaceCrop};
pub use burn;
pub use classify::{ExpressionClassifier, ModelManifest, Views};
pub use detect::{DetectError, DetectorConfig, Face, FaceDetector, MtcnnWeights};
pub use emotion::Emotion;
pub use frame::{Frame, FrameError, Photo};
pub use pipeline::{Analysis, ExpressionRecognizer, FaceExpression, PipelineError};
pub use weights::WeightsError;

/// The crate's directory, for unit tests that read the repository's fixtures. Cargo sets
/// `CARGO_MANIFEST_DIR` when it runs a test, and that beats the compile-time value: a test binary
/// reused from a shared target dir (CI keeps one outside the clone) may have been compiled in
/// another checkout, whose files are gone or another commit's.
#[cfg(test)]
pub(crate) fn test_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .filter(|d| d.join("Cargo.toml").is_file())
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
}
