//! `mien-trainer detect`: the JSON-lines interface other tools rely on.

use std::path::PathBuf;
use std::process::Command;

fn fixture(rel: &str) -> PathBuf {
    mien_trainer::repo_root().join("tests/fixtures").join(rel)
}

#[test]
fn json_lines_per_image_and_errors_do_not_stop_the_others() {
    let dir = std::env::temp_dir().join(format!("mien-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bogus = dir.join("notes.jpg");
    std::fs::write(&bogus, "not a photo").unwrap();
    let two = fixture("faces/obama_biden_two_people.jpg");
    let none = fixture("no_faces/coffee.png");
    let out = Command::new(env!("CARGO_BIN_EXE_mien-trainer"))
        .args(["detect", "--json", "--min-face", "20"])
        .arg(&two)
        .arg(&bogus)
        .arg(&none)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert!(!out.status.success(), "an unreadable image must give a non-zero exit");
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");

    assert_eq!(lines[0]["image"], two.display().to_string());
    assert_eq!((lines[0]["width"].as_u64(), lines[0]["height"].as_u64()), (Some(1126), Some(661)));
    let faces = lines[0]["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 2);
    for f in faces {
        let b: Vec<f64> = f["box"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert!(b.len() == 4 && b[0] < b[2] && b[1] < b[3] && b[2] <= 1126.0 + 50.0);
        assert!(f["score"].as_f64().unwrap() > 0.9);
        let marks = f["landmarks"].as_array().unwrap();
        assert_eq!(marks.len(), 5);
        // Landmarks lie inside their box, eyes above the mouth.
        let pt = |i: usize| (marks[i][0].as_f64().unwrap(), marks[i][1].as_f64().unwrap());
        for i in 0..5 {
            let (x, y) = pt(i);
            assert!(x > b[0] && x < b[2] && y > b[1] && y < b[3], "landmark {i} outside box");
        }
        assert!(pt(0).1 < pt(3).1 && pt(1).1 < pt(4).1);
        assert!(pt(0).0 < pt(1).0, "left eye is image-left");
    }

    assert!(lines[1]["error"].as_str().unwrap().contains("not an image"), "{}", lines[1]);
    assert_eq!(lines[2]["faces"].as_array().unwrap().len(), 0);
}

/// `--upright` leaves out the turned look: heads turned far from upright are found without it
/// and not with it.
#[test]
fn upright_skips_the_search_for_heads_tilted_far() {
    let dir = std::env::temp_dir().join(format!("mien-cli-upright-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for name in ["grace_hopper.jpg", "obama_portrait_small.jpg", "chris_pratt.jpg", "astronaut_eileen_collins.png"] {
        let photo = mien::Frame::decode(&std::fs::read(fixture(&format!("faces/{name}"))).unwrap()).unwrap();
        for degrees in [-75.0f32, 75.0] {
            let turned = mien::detect::turn::turn(&photo, degrees, 128).frame;
            let path = dir.join(format!("{name}.{degrees}.png"));
            image::RgbImage::from_raw(turned.width(), turned.height(), turned.rgb().to_vec())
                .unwrap()
                .save(&path)
                .unwrap();
            files.push(path);
        }
    }
    let with_faces = |upright: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mien-trainer"));
        cmd.args(["detect", "--json"]).args(&files);
        if upright {
            cmd.arg("--upright");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| !serde_json::from_str::<serde_json::Value>(l).unwrap()["faces"].as_array().unwrap().is_empty())
            .count()
    };
    let (turned, upright) = (with_faces(false), with_faces(true));
    std::fs::remove_dir_all(&dir).ok();
    eprintln!("photos turned ±75° with a face found: {turned} of {}, {upright} with --upright", files.len());
    assert!(turned > upright, "{turned} found with the turned look, {upright} without");
    assert!(turned >= files.len() - 1, "{turned} of {}", files.len());
}
