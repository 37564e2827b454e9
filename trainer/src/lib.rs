//! The trainer's library: dataset readers, crops, augmentation, training, cross-validation and
//! the commands of the `mien-trainer` binary (a thin clap layer in `main.rs`).

pub mod augment;
pub mod bench;
pub mod commands;
pub mod compute;
pub mod cropcheck;
pub mod crops;
pub mod cv;
pub mod datasets;
pub mod detect;
pub mod ferplus;
pub mod plots;
pub mod train;
pub mod tune;
