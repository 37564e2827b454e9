//! The browser half of `cargo xtask bench`: detection time per 640×480 one-face frame in headless
//! Chromium, on the CPU and the WebGPU path, min face 20 and 40, median of N runs after warm-up.
//! Times are the worker's own (decode excluded), read from the page's results.

#[path = "browser/harness.rs"]
mod harness;

use harness::{dist, Harness, TempDir};
use serde_json::Value;

const WARM_UP: usize = 3;

async fn time_backend(backend: &str, runs: usize, frame: &[u8]) {
    let h = Harness::start(&dist(), &[]).await;
    h.open(&format!("/?backend={backend}")).await;
    h.wait_for("#engine[data-state='ready']", 300).await;
    let actual = h.eval("document.querySelector('#engine').dataset.backend").await;
    let dir = TempDir::new("bench");
    for min_face in [20, 40] {
        h.eval(&format!(
            "(() => {{ document.querySelector('#photos') && document.querySelectorAll('button').forEach(b => b.textContent == 'Clear' && b.click()); \
             const i = document.querySelector('#min-face'); i.value = '{min_face}'; \
             i.dispatchEvent(new Event('change', {{bubbles: true}})); return true; }})()"
        ))
        .await;
        let mut times = Vec::new();
        for k in 0..WARM_UP + runs {
            let path = dir.0.join(format!("frame-{min_face}-{k}.jpg"));
            std::fs::write(&path, frame).unwrap();
            let input = h.wait_for("#file-input", 30).await;
            input.send_keys(&path.display().to_string()).await.unwrap();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let result = loop {
                let v = h
                    .eval(&format!(
                        "(() => {{ const a = document.querySelector('article.photo[data-name=\"{name}\"]'); \
                         return a ? {{state: a.dataset.state, result: a.dataset.result || null}} : null; }})()"
                    ))
                    .await;
                if v["state"] == "done" {
                    break serde_json::from_str::<Value>(v["result"].as_str().unwrap()).unwrap();
                }
                assert!(v["state"] != "error", "{name}: {v}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            };
            if k >= WARM_UP {
                times.push(result["detect_ms"].as_f64().unwrap());
            }
        }
        times.sort_by(f64::total_cmp);
        println!(
            "browser {:<6} (asked {backend}): min face {min_face:>2}: median {:7.1} ms  min {:7.1} ms  p90 {:7.1} ms  ({} runs)",
            actual.as_str().unwrap_or("?"),
            times[times.len() / 2],
            times[0],
            times[(times.len() * 9 / 10).min(times.len() - 1)],
            times.len()
        );
    }
    h.assert_private();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run `cargo xtask bench`"]
async fn bench_detect_in_chromium() {
    let runs: usize = std::env::var("MIEN_BENCH_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(30);
    let frame =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bench/astronaut_640x480.jpg")).unwrap();
    time_backend("cpu", runs, &frame).await;
    time_backend("webgpu", runs, &frame).await;
}
