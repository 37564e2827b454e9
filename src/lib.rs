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
pub use classify::{ExpressionClassifier, ModelManifest};
pub use detect::{DetectError, DetectorConfig, Face, FaceDetector, MtcnnWeights};
pub use emotion::Emotion;
pub use frame::{Frame, FrameError};
pub use pipeline::{Analysis, ExpressionRecognizer, FaceExpression, PipelineError};
pub use weights::WeightsError;
