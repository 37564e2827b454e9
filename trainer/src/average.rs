//! Weight averaging (stochastic weight averaging, Izmailov et al. 2018): the mean of the weights a
//! run had after each of its last few epochs. Late in a run the weights circle a wide minimum
//! without settling in its middle; their mean sits nearer the middle and often generalises better
//! than any one of them, at no cost per face. Batch norm's statistics are then measured again,
//! on training batches, because the mean of the statistics is not the statistics of the mean
//! network.

use std::path::PathBuf;

use anyhow::Result;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use mien::classify::ExpressionNet;

use crate::augment::SplitMix64;
use crate::train::{batch, load_weights, Example, TrainConfig};

/// Every float tensor of a network (parameters and batch-norm statistics), in traversal order.
struct Collect(Vec<Vec<f32>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.val().into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default());
    }
}

/// Replaces every float tensor of a network by the next of `values` (the order of [`Collect`]).
struct Replace {
    values: Vec<Vec<f32>>,
    next: usize,
}

impl ModuleMapper for Replace {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let values = std::mem::take(&mut self.values[self.next]);
        self.next += 1;
        param.map(|t| {
            let (shape, device) = (t.shape(), t.device());
            Tensor::from_data(TensorData::new(values, shape), &device)
        })
    }
}

fn tensors_of(net: &ExpressionNet) -> Vec<Vec<f32>> {
    let mut c = Collect(Vec::new());
    net.visit(&mut c);
    c.0
}

/// The element-wise mean of the networks saved in `files` (all of one run: same `cfg`).
pub fn average_weights(files: &[PathBuf], cfg: &TrainConfig, num_classes: usize) -> Result<ExpressionNet> {
    anyhow::ensure!(!files.is_empty(), "no weights to average");
    let device = Device::flex();
    let first = load_weights(&files[0], cfg, num_classes, &device)?;
    let mut sum = tensors_of(&first);
    for file in &files[1..] {
        let other = tensors_of(&load_weights(file, cfg, num_classes, &device)?);
        anyhow::ensure!(
            other.len() == sum.len() && other.iter().zip(&sum).all(|(a, b)| a.len() == b.len()),
            "{} does not hold the same network as {}",
            file.display(),
            files[0].display()
        );
        for (s, o) in sum.iter_mut().zip(other) {
            s.iter_mut().zip(o).for_each(|(s, o)| *s += o);
        }
    }
    let n = files.len() as f32;
    sum.iter_mut().for_each(|t| t.iter_mut().for_each(|v| *v /= n));
    Ok(first.map(&mut Replace { values: sum, next: 0 }))
}

/// `net` with its batch-norm statistics measured again: `batches` training batches (augmented as
/// in training, seeded) go through it in training mode, so each batch norm's running mean and
/// variance follow them with the momentum they were trained with.
pub fn refresh_batch_norm(net: ExpressionNet, train: &[Example], cfg: &TrainConfig, batches: usize) -> ExpressionNet {
    let device = crate::compute::device().autodiff();
    let net = net.to_device(&device);
    let mut rng = SplitMix64::new(cfg.seed ^ 0x5357_4121_5f42_4e00);
    let mut order: Vec<usize> = (0..train.len()).collect();
    rng.shuffle(&mut order);
    for idx in order.chunks(cfg.batch_size).take(batches) {
        let (x, _) = batch(train, idx, cfg, Some(&mut rng), &device);
        // Only the side effect counts: the running statistics move towards this batch's.
        let _ = net.forward(x);
    }
    net.valid()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mean of two saved networks is their element-wise mean, batch-norm statistics included.
    #[test]
    fn averages_every_tensor() {
        let dir = std::env::temp_dir().join(format!("mien-average-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = TrainConfig { width: 0.25, ..TrainConfig::default() };
        let device = Device::flex();
        let mut files = Vec::new();
        let mut nets = Vec::new();
        for i in 0..2 {
            device.seed(100 + i);
            // Tensors drawn at random, running statistics included (not their initial 0 and 1).
            let net = cfg.net_config(3).init(&device);
            let values: Vec<Vec<f32>> = tensors_of(&net)
                .iter()
                .enumerate()
                .map(|(k, t)| t.iter().enumerate().map(|(j, _)| (i as f32 + 1.0) * ((k * 7 + j) % 13) as f32).collect())
                .collect();
            let net = net.map(&mut Replace { values, next: 0 });
            let path = dir.join(format!("w{i}.safetensors"));
            crate::train::save_weights(&net, &path).unwrap();
            files.push(path);
            nets.push(tensors_of(&net));
        }
        let mean = tensors_of(&average_weights(&files, &cfg, 3).unwrap());
        assert_eq!(mean.len(), nets[0].len());
        for (k, t) in mean.iter().enumerate() {
            for (j, v) in t.iter().enumerate() {
                let expected = (nets[0][k][j] + nets[1][k][j]) / 2.0;
                assert!((v - expected).abs() < 1e-5, "tensor {k}[{j}]: {v} against {expected}");
            }
        }
        // A file of another network is refused, not silently mixed in.
        let other = TrainConfig { width: 0.5, ..cfg.clone() };
        crate::train::save_weights(&other.net_config(3).init(&device), &dir.join("other.safetensors")).unwrap();
        let mixed = [files[0].clone(), dir.join("other.safetensors")];
        assert!(average_weights(&mixed, &cfg, 3).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
