//! The three MTCNN networks as burn modules, with field names equal to the PyTorch tensor names
//! of the pretrained weights (facenet-pytorch 2.6.0), so that loading needs no renaming table.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PRelu, PReluConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;

fn conv(device: &Device, i: usize, o: usize, k: usize) -> Conv2d {
    Conv2dConfig::new([i, o], [k, k]).init(device)
}

fn prelu(device: &Device, c: usize) -> PRelu {
    PReluConfig::new().with_num_parameters(c).init(device)
}

/// PyTorch `MaxPool2d(k, s, ceil_mode=True)`.
fn pool(k: usize, s: usize) -> MaxPool2d {
    MaxPool2dConfig::new([k, k]).with_strides([s, s]).with_ceil_mode(true).init()
}

/// Flattens `[N, C, H, W]` in the (W, H, C) order the original Caffe weights expect.
fn flatten_whc(x: Tensor<4>) -> Tensor<2> {
    x.permute([0, 3, 2, 1]).flatten::<2>(1, 3)
}

/// Proposal network: fully convolutional, one 12×12 window per output cell (stride 2).
#[derive(Module, Debug)]
pub struct PNet {
    conv1: Conv2d,
    prelu1: PRelu,
    pool1: MaxPool2d,
    conv2: Conv2d,
    prelu2: PRelu,
    conv3: Conv2d,
    prelu3: PRelu,
    conv4_1: Conv2d,
    conv4_2: Conv2d,
}

impl PNet {
    pub fn new(device: &Device) -> Self {
        PNet {
            conv1: conv(device, 3, 10, 3),
            prelu1: prelu(device, 10),
            pool1: pool(2, 2),
            conv2: conv(device, 10, 16, 3),
            prelu2: prelu(device, 16),
            conv3: conv(device, 16, 32, 3),
            prelu3: prelu(device, 32),
            conv4_1: conv(device, 32, 2, 1),
            conv4_2: conv(device, 32, 4, 1),
        }
    }

    /// `[N, 3, H, W]` normalised RGB → (box regression `[N, 4, h, w]`, face probability
    /// `[N, 2, h, w]` (channel 1 = face)).
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let x = self.pool1.forward(self.prelu1.forward(self.conv1.forward(x)));
        let x = self.prelu2.forward(self.conv2.forward(x));
        let x = self.prelu3.forward(self.conv3.forward(x));
        let prob = softmax(self.conv4_1.forward(x.clone()), 1);
        (self.conv4_2.forward(x), prob)
    }
}

/// Refinement network on 24×24 candidates.
#[derive(Module, Debug)]
pub struct RNet {
    conv1: Conv2d,
    prelu1: PRelu,
    pool1: MaxPool2d,
    conv2: Conv2d,
    prelu2: PRelu,
    pool2: MaxPool2d,
    conv3: Conv2d,
    prelu3: PRelu,
    dense4: Linear,
    prelu4: PRelu,
    dense5_1: Linear,
    dense5_2: Linear,
}

impl RNet {
    pub fn new(device: &Device) -> Self {
        RNet {
            conv1: conv(device, 3, 28, 3),
            prelu1: prelu(device, 28),
            pool1: pool(3, 2),
            conv2: conv(device, 28, 48, 3),
            prelu2: prelu(device, 48),
            pool2: pool(3, 2),
            conv3: conv(device, 48, 64, 2),
            prelu3: prelu(device, 64),
            dense4: LinearConfig::new(576, 128).init(device),
            prelu4: prelu(device, 128),
            dense5_1: LinearConfig::new(128, 2).init(device),
            dense5_2: LinearConfig::new(128, 4).init(device),
        }
    }

    /// `[N, 3, 24, 24]` → (regression `[N, 4]`, probability `[N, 2]`).
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let x = self.pool1.forward(self.prelu1.forward(self.conv1.forward(x)));
        let x = self.pool2.forward(self.prelu2.forward(self.conv2.forward(x)));
        let x = self.prelu3.forward(self.conv3.forward(x));
        let x = self.prelu4.forward(self.dense4.forward(flatten_whc(x)));
        let prob = softmax(self.dense5_1.forward(x.clone()), 1);
        (self.dense5_2.forward(x), prob)
    }
}

/// Output network on 48×48 candidates: final score, box and five landmarks.
#[derive(Module, Debug)]
pub struct ONet {
    conv1: Conv2d,
    prelu1: PRelu,
    pool1: MaxPool2d,
    conv2: Conv2d,
    prelu2: PRelu,
    pool2: MaxPool2d,
    conv3: Conv2d,
    prelu3: PRelu,
    pool3: MaxPool2d,
    conv4: Conv2d,
    prelu4: PRelu,
    dense5: Linear,
    prelu5: PRelu,
    dense6_1: Linear,
    dense6_2: Linear,
    dense6_3: Linear,
}

impl ONet {
    pub fn new(device: &Device) -> Self {
        ONet {
            conv1: conv(device, 3, 32, 3),
            prelu1: prelu(device, 32),
            pool1: pool(3, 2),
            conv2: conv(device, 32, 64, 3),
            prelu2: prelu(device, 64),
            pool2: pool(3, 2),
            conv3: conv(device, 64, 64, 3),
            prelu3: prelu(device, 64),
            pool3: pool(2, 2),
            conv4: conv(device, 64, 128, 2),
            prelu4: prelu(device, 128),
            dense5: LinearConfig::new(1152, 256).init(device),
            prelu5: prelu(device, 256),
            dense6_1: LinearConfig::new(256, 2).init(device),
            dense6_2: LinearConfig::new(256, 4).init(device),
            dense6_3: LinearConfig::new(256, 10).init(device),
        }
    }

    /// `[N, 3, 48, 48]` → (regression `[N, 4]`, landmarks `[N, 10]` (x1..x5, y1..y5 relative to
    /// the box), probability `[N, 2]`).
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
        let x = self.pool1.forward(self.prelu1.forward(self.conv1.forward(x)));
        let x = self.pool2.forward(self.prelu2.forward(self.conv2.forward(x)));
        let x = self.pool3.forward(self.prelu3.forward(self.conv3.forward(x)));
        let x = self.prelu4.forward(self.conv4.forward(x));
        let x = self.prelu5.forward(self.dense5.forward(flatten_whc(x)));
        let prob = softmax(self.dense6_1.forward(x.clone()), 1);
        (self.dense6_2.forward(x.clone()), self.dense6_3.forward(x), prob)
    }
}
