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

/// `train --app-crops`: the faces of the fixture photos, cut as a dataset would be, are found
/// again in their synthetic frames and cut as the app cuts them, a crop that holds no face keeps
/// its own pixels, and a second call reads the same crops from the cache.
#[test]
fn the_app_crops_of_face_crops_are_the_faces_found_again_and_are_cached() {
    use mien::align::{crop_face, ncc, CropConfig};
    use mien_trainer::appcrops::to_app_crops;
    use mien_trainer::train::Example;
    let cache = std::env::temp_dir().join(format!("mien-app-crops-test-{}", std::process::id()));
    std::env::set_var("MIEN_CACHE", &cache);
    let fixtures = mien_trainer::repo_root().join("tests/fixtures");
    let crop = CropConfig { size: 48, margin: -0.02, shift: 0.0, align: false };
    let det = mien_trainer::detect::detector(20.0).unwrap();
    let mut examples = Vec::new();
    for name in ["obama_portrait_small.jpg", "apollo11_crew.jpg"] {
        let frame = mien::Frame::from_dynamic(&image::open(fixtures.join("faces").join(name)).unwrap());
        for face in det.detect(&frame).unwrap() {
            examples.push(Example {
                pixels: crop_face(&frame, &face, &crop).pixels,
                label: 0,
                soft: None,
                dataset_pixels: None,
            });
        }
    }
    let faces = examples.len();
    assert!(faces >= 4, "{faces} fixture faces");
    let coffee = image::open(fixtures.join("no_faces/coffee.png")).unwrap().to_luma8();
    let coffee = image::imageops::resize(&coffee, 48, 48, image::imageops::FilterType::Triangle).into_raw();
    examples.push(Example { pixels: coffee.clone(), label: 0, soft: None, dataset_pixels: None });
    let originals: Vec<Vec<u8>> = examples.iter().map(|e| e.pixels.clone()).collect();

    let mut first = examples.clone();
    let counts = to_app_crops(&mut first, &crop, 7, "fixture faces").unwrap();
    assert_eq!(counts.kept, 1, "{counts:?}");
    assert_eq!(counts.in_frame + counts.bare, faces, "{counts:?}");
    assert_eq!(first[faces].pixels, coffee, "no face: the crop stays");
    for (e, o) in first.iter().zip(&originals).take(faces) {
        assert_ne!(&e.pixels, o, "a found face is cut anew");
        assert!(ncc(&e.pixels, o) > 0.6, "the app's crop is the same face: NCC {}", ncc(&e.pixels, o));
    }
    let mut again = examples.clone();
    assert_eq!(to_app_crops(&mut again, &crop, 7, "fixture faces").unwrap(), counts);
    assert!(again.iter().zip(&first).all(|(a, b)| a.pixels == b.pixels), "the cache gives the same crops");
    assert!(std::fs::read_dir(cache.join("app-crops")).unwrap().count() == 1);
    std::fs::remove_dir_all(&cache).ok();
}
