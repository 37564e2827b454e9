//! The two file-system helpers every command shares: where the repository is, and writing a file
//! so that a reader (or a killed run) never sees half of it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

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

/// Writes `path` through `write`, which is given a temporary file beside it (`path` + `.tmp`,
/// in `path`'s folder, created), then renames that over `path`: a reader, or a run killed
/// mid-write, sees the old file or the new one, never half of one.
pub fn replace_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    write(&tmp)?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// [`replace_with`] for bytes already in memory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    replace_with(path, |tmp| std::fs::write(tmp, bytes).with_context(|| format!("writing {}", tmp.display())))
}
