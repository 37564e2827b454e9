//! Asking a trained network for its answers: probabilities, predictions, accuracy, confusion.

use burn::module::Module;
use mien::classify::ExpressionNet;
use mien::metrics::ConfusionMatrix;

use super::{batch, Example, TrainConfig};

/// How a trained network is asked for its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inference {
    /// The crop as it is.
    Plain,
    /// The mean of the softmax of the crop and of its mirror image: what the app does with every
    /// model the trainer writes (`flip_average` in the manifest), so what evaluation must measure.
    FlipAverage,
}

/// Class probabilities of each example (inference mode, no augmentation), in label order.
pub fn probabilities(net: &ExpressionNet, examples: &[Example], cfg: &TrainConfig, how: Inference) -> Vec<Vec<f32>> {
    let device = crate::compute::device();
    let net = net.clone().to_device(&device);
    let mut out = Vec::with_capacity(examples.len());
    let idx: Vec<usize> = (0..examples.len()).collect();
    for chunk in idx.chunks(256) {
        let (x, _) = batch(examples, chunk, cfg, None, &device);
        let probs = net.probabilities(x, how == Inference::FlipAverage);
        let classes = probs.dims()[1];
        let v: Vec<f32> = probs.into_data().convert::<f32>().try_into_vec().unwrap_or_default();
        out.extend(v.chunks(classes).map(|c| c.to_vec()));
    }
    out
}

/// Predicted class of each example: the most probable one.
pub fn predict(net: &ExpressionNet, examples: &[Example], cfg: &TrainConfig, how: Inference) -> Vec<usize> {
    probabilities(net, examples, cfg, how).iter().map(|p| mien::classify::argmax(p)).collect()
}

/// Share of `examples` that `net` answers right, as the app asks it ([`Inference::FlipAverage`]);
/// `None` without examples (a run without a validation split).
pub fn accuracy(net: &ExpressionNet, examples: &[Example], cfg: &TrainConfig) -> Option<f64> {
    (!examples.is_empty()).then(|| {
        let p = predict(net, examples, cfg, Inference::FlipAverage);
        p.iter().zip(examples).filter(|(p, e)| **p == e.label).count() as f64 / examples.len() as f64
    })
}

/// Confusion matrix of `net` on `examples`, answering as the app does ([`Inference::FlipAverage`]).
pub fn evaluate(net: &ExpressionNet, examples: &[Example], cfg: &TrainConfig, labels: &[String]) -> ConfusionMatrix {
    evaluate_with(net, examples, cfg, labels, Inference::FlipAverage)
}

/// Confusion matrix of `net` on `examples`, answering `how`.
pub fn evaluate_with(
    net: &ExpressionNet,
    examples: &[Example],
    cfg: &TrainConfig,
    labels: &[String],
    how: Inference,
) -> ConfusionMatrix {
    let mut m = ConfusionMatrix::new(labels.to_vec());
    for (p, ex) in predict(net, examples, cfg, how).into_iter().zip(examples) {
        m.add(ex.label, p);
    }
    m
}
