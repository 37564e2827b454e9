//! The whole path from a frame to emotions: faces found ([`FaceDetector`]), cut out as the model
//! expects ([`crop_face`] with the manifest's [`CropConfig`](crate::align::CropConfig)), classified
//! ([`ExpressionClassifier`]). The stages are also callable one by one, so a caller can time each.

use serde::{Deserialize, Serialize};

use crate::align::{crop_face, FaceCrop};
use crate::classify::{ClassifierError, ExpressionClassifier, Views};
use crate::detect::{DetectError, DetectorConfig, Face, FaceDetector};
use crate::emotion::Emotion;
use crate::frame::{Frame, Photo};

/// A face and what the classifier makes of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceExpression {
    #[serde(flatten)]
    pub face: Face,
    /// Probability of each emotion, in the classifier's label order (see [`Analysis::labels`]).
    pub probabilities: Vec<f32>,
}

impl FaceExpression {
    /// The most probable emotion's index in the label list, and its probability.
    pub fn top(&self) -> (usize, f32) {
        let i = crate::classify::argmax(&self.probabilities);
        (i, self.probabilities.get(i).copied().unwrap_or(f32::NEG_INFINITY))
    }
}

/// Why a frame could not be analysed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error(transparent)]
    Classify(#[from] ClassifierError),
}

/// The crops `classifier` takes for `faces` of `frame` (its manifest's crop convention).
pub fn crops_for(classifier: &ExpressionClassifier, frame: &Frame, faces: &[Face]) -> Vec<FaceCrop> {
    let config = classifier.manifest().crop;
    faces.iter().map(|f| crop_face(frame, f, &config)).collect()
}

/// Crops and classifies faces already found in `frame`.
pub async fn classify_faces(
    classifier: &ExpressionClassifier,
    frame: &Frame,
    faces: Vec<Face>,
) -> Result<Vec<FaceExpression>, PipelineError> {
    classify_faces_with(classifier, frame, faces, Views::AsTrained).await
}

/// Crops and classifies faces already found in `frame`, from the given views of each crop.
pub async fn classify_faces_with(
    classifier: &ExpressionClassifier,
    frame: &Frame,
    faces: Vec<Face>,
    views: Views,
) -> Result<Vec<FaceExpression>, PipelineError> {
    let crops = crops_for(classifier, frame, &faces);
    let refs: Vec<&FaceCrop> = crops.iter().collect();
    let probabilities = classifier.classify_views_async(&refs, views).await?;
    Ok(faces
        .into_iter()
        .zip(probabilities)
        .map(|(face, probabilities)| FaceExpression { face, probabilities })
        .collect())
}

/// The faces of a photo and, with a classifier, their expressions, in the photo's own pixels.
///
/// Detection and the classifier's crops work on the photo's bounded working frame
/// ([`Frame::decode_photo`], or the browser's scaled copy), which keeps the smallest face searched
/// for at [`crate::detect::PHOTO_FACE_PIXELS`] pixels; only the reported boxes and landmarks are
/// scaled back. The CLI answers photos through this function; the browser worker calls the same
/// stages one by one (to time each) and [`in_photo_pixels`] last.
pub async fn analyze_photo(
    detector: &FaceDetector,
    classifier: Option<&ExpressionClassifier>,
    photo: &Photo,
    config: &DetectorConfig,
) -> Result<Vec<FaceExpression>, PipelineError> {
    let faces = detector.detect_with(&photo.frame, config).await?;
    let faces = match classifier {
        Some(c) => classify_faces(c, &photo.frame, faces).await?,
        None => faces.into_iter().map(|face| FaceExpression { face, probabilities: Vec::new() }).collect(),
    };
    Ok(in_photo_pixels(photo, faces))
}

/// Faces found in `photo`'s working frame, moved to the photo's own pixels.
pub fn in_photo_pixels(photo: &Photo, faces: Vec<FaceExpression>) -> Vec<FaceExpression> {
    let (sx, sy) = photo.scale();
    faces.into_iter().map(|f| FaceExpression { face: f.face.scaled(sx, sy), ..f }).collect()
}

/// Face detection and expression classification on one burn device.
#[derive(Debug, Clone)]
pub struct ExpressionRecognizer {
    pub detector: FaceDetector,
    pub classifier: ExpressionClassifier,
}

/// Faces of one frame with their expressions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub labels: Vec<Emotion>,
    pub faces: Vec<FaceExpression>,
}

impl ExpressionRecognizer {
    pub fn new(detector: FaceDetector, classifier: ExpressionClassifier) -> Self {
        ExpressionRecognizer { detector, classifier }
    }

    /// Classifies faces already found in `frame`.
    pub async fn classify_faces(&self, frame: &Frame, faces: Vec<Face>) -> Result<Vec<FaceExpression>, PipelineError> {
        classify_faces(&self.classifier, frame, faces).await
    }

    /// Finds the faces of `frame` (with `config`, or the detector's own) and classifies each.
    pub async fn analyze_async(
        &self,
        frame: &Frame,
        config: Option<&DetectorConfig>,
    ) -> Result<Analysis, PipelineError> {
        let faces = self.detector.detect_with(frame, config.unwrap_or(self.detector.config())).await?;
        let faces = self.classify_faces(frame, faces).await?;
        Ok(Analysis { labels: self.classifier.manifest().labels.clone(), faces })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn analyze(&self, frame: &Frame, config: Option<&DetectorConfig>) -> Result<Analysis, PipelineError> {
        pollster::block_on(self.analyze_async(frame, config))
    }
}
