//! The trainer's library: dataset readers, crops, augmentation, training, evaluation, reports
//! and the subcommands of the `mien-trainer` binary (`commands/`, one file each; `main.rs` only
//! dispatches).

pub mod appcrops;
pub mod augment;
pub mod average;
pub mod bench;
pub mod commands;
pub mod compute;
pub mod cropcheck;
pub mod crops;
pub mod cv;
pub mod datasets;
pub mod detect;
pub mod evaluate;
pub mod examples;
pub mod ferplus;
pub mod fsutil;
pub mod json;
pub mod lineage;
pub mod model_card;
pub mod onet;
pub mod plots;
pub mod report;
pub mod results;
pub mod train;
pub mod tune;

pub use fsutil::repo_root;
