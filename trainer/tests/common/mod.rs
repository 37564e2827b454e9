//! Helpers shared by the trainer's integration tests that run the `mien-trainer` binary.

use std::path::{Path, PathBuf};

/// A folder under the system's temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("mien-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A small class-folder dataset: 48×48 gray images whose pattern depends on the class (so the
/// network has something to learn), with subject ids in the file names.
pub fn dataset(root: &Path) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 56) as u8
    };
    for (class, label) in ["happy", "sad", "surprise"].iter().enumerate() {
        let dir = root.join(label);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..24 {
            let img = image::GrayImage::from_fn(48, 48, |x, y| {
                let stripe = if (x as usize / (4 + 4 * class) + y as usize / 8).is_multiple_of(2) { 170 } else { 70 };
                image::Luma([stripe / 2 + next() / 2])
            });
            img.save(dir.join(format!("S{:03}_001_{:08}.png", i % 12, i))).unwrap();
        }
    }
}
