//! The expression network: a small CNN designed for the browser as much as for accuracy — a
//! strided stem, then depthwise-separable blocks (a 3×3 depthwise conv and a 1×1 pointwise conv,
//! each with batch norm and ReLU), global average pooling and one linear layer.
//!
//! Two layouts, told apart by [`ExpressionNetConfig::layout`] (saved in the model manifest, so a
//! model folder always loads into the network it was trained as):
//! - 1, the first shipped network: a full 3×3 convolution (24→32 channels) halves the 48×48
//!   resolution; about 13 M multiply-adds per face at width 1.0, a third of them in that one layer,
//!   which, timed on its own, also takes about a third of the native time per face.
//! - 2: a depthwise-separable block with a stride-2 depthwise conv halves the resolution instead,
//!   and a sixth block at 6×6 adds capacity where it costs least (`mien-trainer bench-detect
//!   --widths 1` times both layouts).

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::prelude::*;

/// Architecture hyper-parameters; saved in the model manifest.
#[derive(Config, Debug)]
pub struct ExpressionNetConfig {
    /// Number of output classes.
    pub num_classes: usize,
    /// Channel multiplier of every layer.
    #[config(default = 1.0)]
    pub width: f64,
    #[config(default = 0.3)]
    pub dropout: f64,
    /// Layer layout, 1 or 2 (see the module's documentation).
    #[config(default = 2)]
    pub layout: u32,
}

/// The layouts this build can construct.
pub const LAYOUTS: std::ops::RangeInclusive<u32> = 1..=2;

/// Conv (optionally depthwise) + batch norm + ReLU.
#[derive(Module, Debug)]
pub struct ConvBn {
    conv: Conv2d,
    /// `None` once folded into `conv` for inference ([`ExpressionNet::fold_batch_norm`]).
    bn: Option<BatchNorm>,
    relu: Relu,
}

impl ConvBn {
    fn new(device: &Device, input: usize, output: usize, kernel: usize, stride: usize, groups: usize) -> Self {
        ConvBn {
            conv: Conv2dConfig::new([input, output], [kernel, kernel])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(kernel / 2, kernel / 2, kernel / 2, kernel / 2))
                .with_groups(groups)
                .with_bias(false)
                .init(device),
            bn: Some(BatchNormConfig::new(output).init(device)),
            relu: Relu::new(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.conv.forward(x);
        let x = match &self.bn {
            Some(bn) => bn.forward(x),
            None => x,
        };
        self.relu.forward(x)
    }

    /// Inference-time batch norm is a per-channel affine map, `y = s·x + t` with
    /// `s = γ / √(var + ε)` and `t = β − s·mean`; scaling the conv's output filters by `s` and
    /// giving it the bias `t` computes the same thing in one op instead of several.
    fn fold_batch_norm(self) -> Self {
        let ConvBn { mut conv, bn, relu } = self;
        let Some(bn) = bn else { return ConvBn { conv, bn: None, relu } };
        let scale = bn.gamma.val() / (bn.running_var.value() + bn.epsilon).sqrt();
        let shift = bn.beta.val() - bn.running_mean.value() * scale.clone();
        let [out, ..] = conv.weight.dims();
        let weight = conv.weight.val() * scale.clone().reshape([out, 1, 1, 1]);
        let bias = match &conv.bias {
            Some(b) => b.val() * scale + shift,
            None => shift,
        };
        conv.weight = Param::from_tensor(weight);
        conv.bias = Some(Param::from_tensor(bias));
        ConvBn { conv, bn: None, relu }
    }
}

/// Depthwise 3×3 then pointwise 1×1.
#[derive(Module, Debug)]
pub struct SeparableBlock {
    depthwise: ConvBn,
    pointwise: ConvBn,
}

impl SeparableBlock {
    fn new(device: &Device, input: usize, output: usize) -> Self {
        Self::strided(device, input, output, 1)
    }

    /// With a stride-`stride` depthwise conv: downsampling at a fraction of a full conv's cost.
    fn strided(device: &Device, input: usize, output: usize, stride: usize) -> Self {
        SeparableBlock {
            depthwise: ConvBn::new(device, input, input, 3, stride, input),
            pointwise: ConvBn::new(device, input, output, 1, 1, 1),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.pointwise.forward(self.depthwise.forward(x))
    }

    fn fold_batch_norm(self) -> Self {
        SeparableBlock { depthwise: self.depthwise.fold_batch_norm(), pointwise: self.pointwise.fold_batch_norm() }
    }
}

#[derive(Module, Debug)]
pub struct ExpressionNet {
    stem1: ConvBn,
    /// Layout 1: a full strided conv halves the resolution.
    stem2: Option<ConvBn>,
    /// Layout 2: a separable block with a strided depthwise conv does.
    down: Option<SeparableBlock>,
    block1: SeparableBlock,
    pool1: MaxPool2d,
    block2: SeparableBlock,
    block3: SeparableBlock,
    pool2: MaxPool2d,
    block4: SeparableBlock,
    block5: SeparableBlock,
    /// Layout 2 only.
    block6: Option<SeparableBlock>,
    gap: AdaptiveAvgPool2d,
    dropout: Dropout,
    head: Linear,
}

impl ExpressionNetConfig {
    pub fn init(&self, device: &Device) -> ExpressionNet {
        let c = |n: usize| ((n as f64 * self.width).round() as usize).max(4);
        let first = self.layout == 1;
        ExpressionNet {
            stem1: ConvBn::new(device, 1, c(24), 3, 1, 1),
            stem2: first.then(|| ConvBn::new(device, c(24), c(32), 3, 2, 1)),
            down: (!first).then(|| SeparableBlock::strided(device, c(24), c(32), 2)),
            block1: SeparableBlock::new(device, c(32), c(64)),
            pool1: MaxPoolConfig2::pool(),
            block2: SeparableBlock::new(device, c(64), c(128)),
            block3: SeparableBlock::new(device, c(128), c(128)),
            pool2: MaxPoolConfig2::pool(),
            block4: SeparableBlock::new(device, c(128), c(256)),
            block5: SeparableBlock::new(device, c(256), c(256)),
            block6: (!first).then(|| SeparableBlock::new(device, c(256), c(256))),
            gap: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            dropout: DropoutConfig::new(self.dropout).init(),
            head: LinearConfig::new(c(256), self.num_classes).init(device),
        }
    }
}

struct MaxPoolConfig2;

impl MaxPoolConfig2 {
    fn pool() -> MaxPool2d {
        MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init()
    }
}

impl ExpressionNet {
    /// The same network with a fresh, randomly initialised classification head of `num_classes`
    /// outputs: fine-tuning a trained feature extractor on another label set.
    pub fn with_fresh_head(mut self, num_classes: usize, device: &Device) -> Self {
        let features = self.head.weight.dims()[0];
        self.head = LinearConfig::new(features, num_classes).init(device);
        self
    }

    /// The same function with every batch norm folded into the conv before it: about a third
    /// fewer tensor ops per face, for inference only (a folded network has no batch statistics
    /// left to train). Outputs equal the unfolded network's up to float rounding.
    pub fn fold_batch_norm(self) -> Self {
        let block = |b: Option<SeparableBlock>| b.map(SeparableBlock::fold_batch_norm);
        ExpressionNet {
            stem1: self.stem1.fold_batch_norm(),
            stem2: self.stem2.map(ConvBn::fold_batch_norm),
            down: block(self.down),
            block1: self.block1.fold_batch_norm(),
            pool1: self.pool1,
            block2: self.block2.fold_batch_norm(),
            block3: self.block3.fold_batch_norm(),
            pool2: self.pool2,
            block4: self.block4.fold_batch_norm(),
            block5: self.block5.fold_batch_norm(),
            block6: block(self.block6),
            gap: self.gap,
            dropout: self.dropout,
            head: self.head,
        }
    }

    /// `[N, 1, 48, 48]` normalised gray crops → class probabilities `[N, classes]`. With
    /// `flip_average`, each crop's are the mean of its own and its mirror image's (one batch of 2N):
    /// expressions are nearly symmetric, and the mean is steadier than either.
    pub fn probabilities(&self, x: Tensor<4>, flip_average: bool) -> Tensor<2> {
        if !flip_average {
            return burn::tensor::activation::softmax(self.forward(x), 1);
        }
        let n = x.dims()[0];
        let both = Tensor::cat(vec![x.clone(), x.flip([3])], 0);
        let p = burn::tensor::activation::softmax(self.forward(both), 1);
        (p.clone().narrow(0, 0, n) + p.narrow(0, n, n)) / 2.0
    }

    /// `[N, 1, 48, 48]` normalised gray crops → logits `[N, classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.head.forward(self.dropout.forward(self.features(x)))
    }

    /// Logits with dropout's mask given instead of drawn inside: `keep` is `[N, features]` of 0
    /// and 1 (1 with probability 1 − dropout), and kept features are scaled by 1 / (1 − dropout)
    /// as [`Dropout`] does. A trainer that runs parts of a batch on several threads draws the masks
    /// on one thread, in a fixed order, so a seeded run gives the same numbers every time.
    pub fn forward_with_dropout_mask(&self, x: Tensor<4>, keep: Tensor<2>) -> Tensor<2> {
        let features = self.features(x);
        let p = self.dropout.prob;
        // As `Dropout` computes it (mask, then times 1 / (1 − p)), to the last bit.
        let features = if p > 0.0 { features * keep * (1.0 / (1.0 - p)) } else { features };
        self.head.forward(features)
    }

    /// Width of the pooled feature vector the head reads (the dropout mask's second dimension).
    pub fn feature_count(&self) -> usize {
        self.head.weight.dims()[0]
    }

    /// The dropout probability before the head.
    pub fn dropout_prob(&self) -> f64 {
        self.dropout.prob
    }

    /// `[N, 1, 48, 48]` → the globally pooled features `[N, feature_count]`.
    fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.stem1.forward(x);
        let x = match (&self.stem2, &self.down) {
            (Some(conv), _) => conv.forward(x),
            (None, Some(block)) => block.forward(x),
            (None, None) => x,
        };
        let x = self.pool1.forward(self.block1.forward(x));
        let x = self.pool2.forward(self.block3.forward(self.block2.forward(x)));
        let x = self.block5.forward(self.block4.forward(x));
        let x = match &self.block6 {
            Some(block) => block.forward(x),
            None => x,
        };
        self.gap.forward(x).flatten::<2>(1, 3)
    }
}
