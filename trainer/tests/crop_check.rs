//! `crop-check --photos`: a face moved into a larger frame, at another scale and place, is found
//! again where it went and cropped as before; a file that is not an image is skipped, not fatal.

use mien_trainer::cropcheck::check_photos;
use mien_trainer::evaluate::{load_classifier, shipped_model_dir};

#[test]
fn a_portrait_moved_into_larger_frames_is_found_and_cropped_as_before() {
    let dir = std::env::temp_dir().join(format!("mien-crop-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fixtures = mien_trainer::repo_root().join("tests/fixtures");
    std::fs::copy(fixtures.join("faces/obama_portrait_small.jpg"), dir.join("portrait.jpg")).unwrap();
    std::fs::copy(fixtures.join("no_faces/coffee.png"), dir.join("coffee.png")).unwrap();
    std::fs::write(dir.join("notes.jpg"), b"not a photo").unwrap();
    let classifier = load_classifier(&shipped_model_dir()).unwrap();
    let check = check_photos(&classifier, &dir, 42).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!((check.photos, check.faces), (1, 1), "{check:?}");
    assert_eq!(check.framings, check.scales.len(), "{check:?}");
    assert_eq!(check.found_again, check.framings, "{check:?}");
    // The same face, resampled: its two crops are strongly correlated (0.77 here, where the
    // 0.75 scale blurs this 320×240 portrait; 0.89 over all the fixture photos).
    assert!(check.mean_ncc > 0.7, "{check:?}");
    assert!((0.0..=1.0).contains(&check.agreement) && (0.0..=1.0).contains(&check.mean_probability_change));
}
