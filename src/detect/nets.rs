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

/// PyTorch `MaxPool2d(k, s, ceil_mode=True)`; run it with [`max_pool`].
fn pool(k: usize, s: usize) -> MaxPool2d {
    MaxPool2dConfig::new([k, k]).with_strides([s, s]).with_ceil_mode(true).init()
}

/// Applies `pool` (one made by [`pool`]). On the CPU backend the maxima are taken here, plane by
/// plane: rows first (whole rows at a time, which the compiler vectorises), then columns.
/// burn-flex pools through a generic 3-D kernel that also tracks where each maximum came from,
/// and maxima of shifted slices (`max_pair`) cost a mask and a scalar select per cell: either
/// was close to half of the detector's time on a 12-megapixel photo (perf on the cascade, one
/// thread). A maximum is exact either way, so the outputs are the same to the bit. Other
/// backends keep their own pooling kernel.
fn max_pool(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let [kh, kw] = pool.kernel_size;
    let [sh, sw] = pool.stride;
    let [n, c, h, w] = x.dims();
    if !pools_on_host(&x.device()) || h < kh || w < kw {
        return pool.forward(x);
    }
    let device = x.device();
    let values = match x.clone().try_into_data().map(|d| d.convert::<f32>().try_into_vec::<f32>()) {
        Ok(Ok(v)) => v,
        _ => return pool.forward(x),
    };
    let (oh, ow) = (ceil_windows(h, kh, sh), ceil_windows(w, kw, sw));
    let out = max_pool_planes(&values, [n * c, h, w], [kh, kw], [sh, sw]);
    Tensor::from_data(TensorData::new(out, [n, c, oh, ow]), &device)
}

/// Whether [`max_pool`] takes its maxima on the host for `device`: on burn's CPU backend, whose
/// tensors already live in host memory.
fn pools_on_host(device: &Device) -> bool {
    matches!(device.as_dispatch(), burn::backend::DispatchDevice::Flex(_))
}

/// How many windows of `k` cells starting every `s` cells PyTorch's ceil mode gives along `n`
/// cells (`k ≤ n`): one more for a remainder, unless it would start past the end.
fn ceil_windows(n: usize, k: usize, s: usize) -> usize {
    let out = (n - k).div_ceil(s) + 1;
    if (out - 1) * s >= n {
        out - 1
    } else {
        out
    }
}

/// Max pooling of `planes` row-major planes of `h × w` cells, ceil mode: a window overhanging
/// the end takes the maximum of the cells it covers.
fn max_pool_planes(values: &[f32], [planes, h, w]: [usize; 3], [kh, kw]: [usize; 2], [sh, sw]: [usize; 2]) -> Vec<f32> {
    let (oh, ow) = (ceil_windows(h, kh, sh), ceil_windows(w, kw, sw));
    let mut out = Vec::with_capacity(planes * oh * ow);
    let mut row = vec![0f32; w];
    for plane in values.chunks_exact(h * w).take(planes) {
        for oy in 0..oh {
            let y0 = oy * sh;
            row.copy_from_slice(&plane[y0 * w..(y0 + 1) * w]);
            for y in y0 + 1..(y0 + kh).min(h) {
                for (m, &v) in row.iter_mut().zip(&plane[y * w..(y + 1) * w]) {
                    *m = m.max(v);
                }
            }
            out.extend((0..ow).map(|ox| {
                let x0 = ox * sw;
                row[x0..(x0 + kw).min(w)].iter().copied().fold(f32::NEG_INFINITY, f32::max)
            }));
        }
    }
    out
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
        let x = max_pool(&self.pool1, self.prelu1.forward(self.conv1.forward(x)));
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
        let x = max_pool(&self.pool1, self.prelu1.forward(self.conv1.forward(x)));
        let x = max_pool(&self.pool2, self.prelu2.forward(self.conv2.forward(x)));
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
        let (reg, marks, logits) = self.forward_logits(x);
        (reg, marks, softmax(logits, 1))
    }

    /// [`Self::forward`] with the face/not-face scores before the softmax, for training.
    pub fn forward_logits(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
        let x = max_pool(&self.pool1, self.prelu1.forward(self.conv1.forward(x)));
        let x = max_pool(&self.pool2, self.prelu2.forward(self.conv2.forward(x)));
        let x = max_pool(&self.pool3, self.prelu3.forward(self.conv3.forward(x)));
        let x = self.prelu4.forward(self.conv4.forward(x));
        let x = self.prelu5.forward(self.dense5.forward(flatten_whc(x)));
        (self.dense6_2.forward(x.clone()), self.dense6_3.forward(x.clone()), self.dense6_1.forward(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    /// The host pooling of the CPU path gives burn's own pooling bit for bit, on the shapes
    /// the three networks meet (even and odd sides, windows that overhang the end, batches).
    #[test]
    fn cpu_pooling_equals_burns_max_pool() {
        let device = Device::flex();
        assert!(pools_on_host(&device), "the CPU backend is the one that pools on the host");
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 8.0 - 4.0
        };
        for (k, s, shape) in [
            (2, 2, [1, 10, 10, 10]),
            (2, 2, [1, 10, 143, 191]),
            (2, 2, [2, 3, 7, 12]),
            (2, 2, [1, 2, 2, 3]),
            (3, 2, [4, 28, 22, 22]),
            (3, 2, [2, 48, 9, 9]),
            (3, 2, [3, 32, 46, 46]),
            (3, 2, [1, 64, 21, 21]),
            (3, 2, [1, 5, 3, 8]),
            (2, 2, [3, 64, 8, 8]),
        ] {
            let values: Vec<f32> = (0..shape.iter().product::<usize>()).map(|_| next()).collect();
            let x = Tensor::<4>::from_data(TensorData::new(values, shape), &device);
            let p = pool(k, s);
            let expected = p.forward(x.clone());
            let got = max_pool(&p, x);
            assert_eq!(got.dims(), expected.dims(), "k {k} s {s} {shape:?}");
            assert_eq!(
                got.into_data().try_to_vec::<f32>().unwrap(),
                expected.into_data().try_to_vec::<f32>().unwrap(),
                "k {k} s {s} {shape:?}"
            );
        }
    }
}
