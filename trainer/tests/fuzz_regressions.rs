//! Replays every kept fuzz input through the fuzz targets' own code (`fuzz/harness.rs`), on
//! stable Rust, in the normal test suite: the seed corpus (`fuzz/seeds/<target>/`) and every input
//! that once crashed a target (`fuzz/regressions/<target>/`, named after what it found).
//! The fuzzing itself is `cargo xtask fuzz` (nightly, cargo-fuzz); see the README's reliability
//! section.

#[allow(dead_code)]
#[path = "../../fuzz/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};

type Target = (&'static str, fn(&[u8]));

const TARGETS: [Target; 6] = [
    ("image_to_crop", harness::image_to_crop),
    ("image_to_faces", harness::image_to_faces),
    ("weights", harness::weights),
    ("model_manifest", harness::model_manifest),
    ("dataset_files", harness::dataset_files),
    ("report_json", harness::report_json),
];

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn every_kept_fuzz_input_runs_clean() {
    let fuzz = mien_trainer::repo_root().join("fuzz");
    let mut replayed = 0;
    for (target, run) in TARGETS {
        let seeds = inputs(&fuzz.join("seeds").join(target));
        assert!(!seeds.is_empty(), "fuzz/seeds/{target} is empty");
        for input in seeds.iter().chain(&inputs(&fuzz.join("regressions").join(target))) {
            let bytes = std::fs::read(input).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&bytes));
            assert!(outcome.is_ok(), "{target}: {} crashes the target again", input.display());
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} kept fuzz inputs");
}

#[test]
fn the_image_seed_is_a_face_the_detector_finds() {
    // Without this the image target would fuzz only the "no face" path.
    let seed = std::fs::read(mien_trainer::repo_root().join("fuzz/seeds/image_to_faces/face64.png")).unwrap();
    let frame = mien::Frame::decode(&seed).unwrap();
    assert!(frame.width() * frame.height() <= 64 * 64);
    let faces = mien_trainer::detect::detector(20.0).unwrap().detect(&frame).unwrap();
    assert_eq!(faces.len(), 1, "{faces:?}");
}
