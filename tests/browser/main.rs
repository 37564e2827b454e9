//! End-to-end tests of the web app in headless Chromium (Debian's), driven over WebDriver.
//!
//! They need the built app and a browser, so they are `#[ignore]`d in a plain `cargo test`;
//! `cargo xtask test` builds `dist/` and runs them with `--ignored`.

#[path = "../common/mod.rs"]
mod common;
mod harness;

use std::path::PathBuf;

use common::{detector, fixture, iou};
use harness::{dist, Harness, TempDir};
use mien::{Face, Frame};
use serde_json::Value;

/// Uploads `files` through the page's file input and waits until every card has an answer.
async fn upload_and_wait(h: &Harness, files: &[PathBuf], secs: u64) -> Vec<Value> {
    let before = h.eval("document.querySelectorAll('article.photo').length").await.as_u64().unwrap();
    let input = h.wait_for("#file-input", 30).await;
    let paths: Vec<String> = files.iter().map(|p| p.canonicalize().unwrap().display().to_string()).collect();
    input.send_keys(&paths.join("\n")).await.unwrap();
    let want = before as usize + files.len();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let cards = h
            .eval(
                "Array.from(document.querySelectorAll('article.photo')).map(a => ({name: a.dataset.name, \
                 state: a.dataset.state, result: a.dataset.result || null, text: a.innerText}))",
            )
            .await;
        let cards = cards.as_array().unwrap().clone();
        if cards.len() >= want && cards.iter().all(|c| c["state"] != "pending") {
            return cards;
        }
        assert!(std::time::Instant::now() < deadline, "photos still pending after {secs} s: {cards:?}");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

async fn wait_ready(h: &Harness) -> String {
    h.wait_for("#engine[data-state='ready'], #engine[data-state='failed']", 240).await;
    let state = h.eval("document.querySelector('#engine').dataset.state").await;
    let text = h.eval("document.querySelector('#engine').innerText").await;
    assert_eq!(state, "ready", "engine: {text}");
    h.eval("document.querySelector('#engine').dataset.backend").await.as_str().unwrap().to_string()
}

/// Runs the page's self-test and asserts the networks match the reference outputs to 1e-4.
async fn assert_self_test_passes(h: &Harness) {
    h.wait_for("#self-test-button:not([disabled])", 60).await.click().await.unwrap();
    let el = h.wait_for("#self-test", 300).await;
    let text = el.text().await.unwrap_or_default();
    let result: Value = serde_json::from_str(&el.attr("data-result").await.unwrap().unwrap_or_default())
        .unwrap_or_else(|_| panic!("self-test failed: {text}"));
    for net in ["pnet", "rnet", "onet"] {
        let dev = result[net].as_f64().unwrap();
        assert!(dev <= 1e-4, "{net} deviates {dev} from the golden outputs in the browser");
    }
    eprintln!("self-test in the browser: {result}");
}

fn card<'a>(cards: &'a [Value], name: &str) -> &'a Value {
    cards.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no card for {name}: {cards:?}"))
}

/// The browser's faces for a card must be the native detector's, up to float rounding.
fn assert_matches_native(file: &PathBuf, card: &Value, box_iou: f32) {
    let name = file.file_name().unwrap().to_string_lossy();
    assert_eq!(card["state"], "done", "{name}: {card}");
    let result: Value = serde_json::from_str(card["result"].as_str().unwrap()).unwrap();
    let browser: Vec<Face> = serde_json::from_value(result["faces"].clone()).unwrap();
    let frame = Frame::decode(&std::fs::read(file).unwrap()).unwrap();
    let native = detector().detect(&frame).unwrap();
    assert_eq!(result["width"], frame.width(), "{name}");
    let confident = |faces: &[Face]| faces.iter().filter(|f| f.score >= 0.9).cloned().collect::<Vec<_>>();
    let (browser, native) = (confident(&browser), confident(&native));
    assert_eq!(browser.len(), native.len(), "{name}: browser {browser:?} vs native {native:?}");
    for n in &native {
        let b = browser.iter().max_by(|a, b| iou(a.bbox, n.bbox).total_cmp(&iou(b.bbox, n.bbox))).unwrap();
        assert!(iou(b.bbox, n.bbox) >= box_iou, "{name}: browser {:?} vs native {:?}", b.bbox, n.bbox);
        assert!((b.score - n.score).abs() <= 0.01, "{name}: score {} vs {}", b.score, n.score);
        let size = n.width().max(n.height());
        for (p, q) in b.landmarks.iter().zip(&n.landmarks) {
            let d = ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt();
            assert!(d <= 0.02 * size, "{name}: landmark off by {d:.1} px");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the built app and Chromium: run `cargo xtask test`"]
async fn photos_on_the_cpu_path_match_native_detection() {
    let h = Harness::start(&dist(), &[]).await;
    h.open("/?backend=cpu").await;
    assert_eq!(wait_ready(&h).await, "CPU");
    assert_self_test_passes(&h).await;
    let files: Vec<PathBuf> = [
        "faces/apollo11_crew.jpg",
        "faces/astronaut_eileen_collins.png",
        "faces/bryan_codait_tiny.png",
        "faces/obama_biden_two_people.jpg",
        "faces/cameraman_profile_gray.png",
        "faces/luciano_codait.png",
        "no_faces/coffee.png",
        "no_faces/chelsea_cat.png",
    ]
    .iter()
    .map(|f| fixture(f))
    .collect();
    let cards = upload_and_wait(&h, &files, 300).await;
    for f in &files {
        assert_matches_native(f, card(&cards, &f.file_name().unwrap().to_string_lossy()), 0.95);
    }
    assert!(card(&cards, "apollo11_crew.jpg")["text"].as_str().unwrap().contains("3 faces"));
    h.screenshot("photos-cpu").await;
    h.assert_private();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the built app and Chromium: run `cargo xtask test`"]
async fn photos_on_the_webgpu_path_match_native_detection() {
    let h = Harness::start(&dist(), &[]).await;
    h.open("/?backend=webgpu").await;
    // Headless Chromium with --enable-unsafe-webgpu exposes SwiftShader's WebGPU adapter.
    assert_eq!(wait_ready(&h).await, "WebGPU");
    assert_self_test_passes(&h).await;
    let files: Vec<PathBuf> =
        ["faces/bryan_codait_tiny.png", "faces/astronaut_eileen_collins.png", "faces/apollo11_crew.jpg"]
            .iter()
            .map(|f| fixture(f))
            .collect();
    let cards = upload_and_wait(&h, &files, 500).await;
    for f in &files {
        assert_matches_native(f, card(&cards, &f.file_name().unwrap().to_string_lossy()), 0.95);
    }
    h.screenshot("photos-webgpu").await;
    h.assert_private();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the built app and Chromium: run `cargo xtask test`"]
async fn bad_files_get_a_clear_message_and_the_page_keeps_working() {
    let dir = TempDir::new("bad-files");
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let coffee = std::fs::read(fixture("no_faces/coffee.png")).unwrap();
    let files = vec![
        write("empty.jpg", b""),
        write("notes.jpg", b"these are my holiday notes, not a photo"),
        write("truncated.png", &coffee[..coffee.len() / 3]),
        write("huge.png", &std::fs::read(fixture("bad/huge_header_30000x30000.png")).unwrap()),
    ];
    let h = Harness::start(&dist(), &[]).await;
    h.open("/?backend=cpu").await;
    wait_ready(&h).await;
    let cards = upload_and_wait(&h, &files, 120).await;
    for (name, words) in [
        ("empty.jpg", "empty"),
        ("notes.jpg", "not an image"),
        ("truncated.png", "damaged or truncated"),
        ("huge.png", "30000×30000"),
    ] {
        let c = card(&cards, name);
        assert_eq!(c["state"], "error", "{name}: {c}");
        assert!(c["text"].as_str().unwrap().contains(words), "{name}: message {:?} lacks {words:?}", c["text"]);
    }
    h.screenshot("photos-bad-files").await;
    // The page still works after all that.
    let good = fixture("faces/bryan_codait_tiny.png");
    let cards = upload_and_wait(&h, std::slice::from_ref(&good), 120).await;
    assert_matches_native(&good, card(&cards, "bryan_codait_tiny.png"), 0.95);
    h.assert_private();
    h.finish().await;
}
