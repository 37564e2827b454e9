//! The trainer's library: dataset readers, crops, augmentation, training, cross-validation and
//! the commands of the `mien-trainer` binary (a thin clap layer in `main.rs`).

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
pub mod ferplus;
pub mod json;
pub mod plots;
pub mod train;
pub mod tune;

use std::path::{Path, PathBuf};

/// The repository this trainer belongs to, for its defaults (the shipped model, the benchmark's
/// frame) and its tests' fixtures. Cargo sets `CARGO_MANIFEST_DIR` when it runs a binary or a
/// test, and that beats the directory the binary was compiled in: a build reused from a shared
/// target dir (CI keeps one outside the clone) may come from another checkout, whose files are
/// gone or another commit's. Run directly, the binary takes the current directory when that is
/// the repository's root, and the checkout it was compiled in otherwise.
pub fn repo_root() -> PathBuf {
    let is_root = |d: &Path| d.join("Cargo.toml").is_file() && d.join("assets/model").is_dir();
    let from_cargo = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).and_then(|d| {
        // The trainer's or the xtask's package directory, or the workspace root itself.
        [d.parent().map(Path::to_path_buf), Some(d)].into_iter().flatten().find(|c| is_root(c))
    });
    from_cargo
        .or_else(|| std::env::current_dir().ok().filter(|d| is_root(d)))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
}
