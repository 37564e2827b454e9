//! The browser test harness: the built app (`$MIEN_DIST`) served by a recording proxy, Debian's
#![allow(dead_code)]
//! Chromium driven through chromedriver by fantoccini.
//!
//! Chromium is told to send *every* request through the proxy (`--proxy-server` with
//! `<-loopback>`, so even 127.0.0.1 goes through it). The proxy serves the app's own files when
//! asked for them in proxy form (`GET http://127.0.0.1:PORT/...`) and records everything; any
//! request for another host is a privacy failure. Chromium's own update/sign-in pings (CONNECTs to
//! Google infrastructure that no flag fully silences) are recorded apart and refused.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::wd::{Capabilities, TimeoutConfiguration};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Hosts Chromium itself contacts (component updates, sign-in, and the preconnect to Debian's
/// default search engine), never the page. Plain-HTTP requests are also told apart by their
/// `Sec-Fetch-Mode` header, which Chromium adds to every request a page or worker makes.
const BROWSER_INFRASTRUCTURE: &[&str] = &[
    "update.googleapis.com",
    "accounts.google.com",
    "gvt1.com",
    "clients2.google.com",
    "googleapis.com",
    "gstatic.com",
    "duckduckgo.com",
];

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub status: u16,
}

#[derive(Default)]
pub struct Log {
    /// Requests for the app's own origin.
    pub own: Vec<Request>,
    /// Requests for anything else made by the page (privacy failures).
    pub foreign: Vec<Request>,
    /// Chromium's own infrastructure pings (refused, reported, not failures).
    pub browser: Vec<Request>,
}

pub struct Harness {
    pub client: Client,
    pub origin: String,
    pub log: Arc<Mutex<Log>>,
    driver: Child,
    _profile: TempDir,
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("mien-{tag}-{}-{}", std::process::id(), nanos()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

pub fn dist() -> PathBuf {
    let dist = PathBuf::from(
        std::env::var("MIEN_DIST")
            .expect("MIEN_DIST is not set: the browser tests need the built app; run them with `cargo xtask test`"),
    );
    assert!(dist.join("index.html").exists(), "{} has no index.html: run `cargo xtask build`", dist.display());
    dist
}

fn chromium() -> String {
    std::env::var("MIEN_CHROMIUM").unwrap_or_else(|_| "/usr/lib/chromium/chromium".into())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Harness {
    /// Serves `dist` and starts a fresh headless Chromium profile, with extra Chromium `args`.
    pub async fn start(dist: &Path, extra_args: &[String]) -> Harness {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let origin = format!("http://127.0.0.1:{port}");
        let log = Arc::new(Mutex::new(Log::default()));
        tokio::spawn(serve(listener, dist.to_path_buf(), format!("127.0.0.1:{port}"), log.clone()));

        let driver_port = free_port();
        let driver = Command::new(std::env::var("MIEN_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into()))
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver not found: install Debian's chromium-driver (cargo xtask setup does)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", driver_port)).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let profile = TempDir::new("chromium");
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu-sandbox".into(),
            "--disable-dev-shm-usage".into(),
            "--enable-unsafe-webgpu".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-extensions".into(),
            "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,Translate,MediaRouter".into(),
            "--window-size=1280,1000".into(),
            format!("--proxy-server=http://127.0.0.1:{port}"),
            "--proxy-bypass-list=<-loopback>".into(),
            format!("--user-data-dir={}", profile.0.display()),
        ];
        args.extend(extra_args.iter().cloned());
        let mut caps = Capabilities::new();
        caps.insert("browserName".into(), "chrome".into());
        // Console messages and uncaught errors, read back by `console_errors`.
        caps.insert("goog:loggingPrefs".into(), serde_json::json!({ "browser": "ALL" }));
        caps.insert("goog:chromeOptions".into(), serde_json::json!({ "binary": chromium(), "args": args }));
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{driver_port}"))
            .await
            .expect("chromedriver session");
        client.update_timeouts(TimeoutConfiguration::new(Some(Duration::from_secs(600)), None, None)).await.unwrap();
        Harness { client, origin, log, driver, _profile: profile }
    }

    pub async fn open(&self, path_and_query: &str) {
        self.client.goto(&format!("{}{}", self.origin, path_and_query)).await.unwrap();
    }

    /// Waits until the element matching `css` exists.
    pub async fn wait_for(&self, css: &str, secs: u64) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(secs))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("waiting {secs} s for `{css}`: {e}"))
    }

    /// Whether `css` matches an element within `secs` seconds.
    pub async fn wait_for_opt(&self, css: &str, secs: u64) -> bool {
        self.client.wait().at_most(Duration::from_secs(secs)).for_element(Locator::Css(css)).await.is_ok()
    }

    /// Runs a JS expression and returns its JSON value.
    pub async fn eval(&self, expr: &str) -> serde_json::Value {
        self.client.execute(&format!("return ({expr});"), vec![]).await.unwrap()
    }

    /// Console errors and uncaught exceptions (page and workers) since the last call, from
    /// chromedriver's browser log.
    pub async fn console_errors(&self) -> Vec<String> {
        let log = self.client.issue_cmd(BrowserLog).await.unwrap();
        log.as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .map(|e| e["message"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Awaits a JS promise expression and returns its JSON value.
    pub async fn eval_async(&self, expr: &str) -> serde_json::Value {
        let script = format!("const done = arguments[arguments.length - 1]; Promise.resolve({expr}).then(done, e => done({{error: String(e)}}));");
        self.client.execute_async(&script, vec![]).await.unwrap()
    }

    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// Own-origin requests from the `n`-th on (to say what was fetched when none was expected).
    pub fn own_requests_since(&self, n: usize) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.own.iter().skip(n).map(|r| format!("{} {} ({})", r.method, r.target, r.status)).collect()
    }

    /// The paths the offline cache (web/sw.js's `mien-v2`) holds, once it holds all of `wanted`
    /// or after 30 s: it is filled in the background, with retries.
    pub async fn offline_cache_once_it_holds(&self, wanted: &[&str]) -> Vec<String> {
        let mut cached = Vec::new();
        for _ in 0..60 {
            let keys = self
                .eval_async(
                    "navigator.serviceWorker.ready.then(() => caches.open('mien-v2')).then(c => c.keys()).then(k => k.map(r => new URL(r.url).pathname))",
                )
                .await;
            cached = keys
                .as_array()
                .map(|a| a.iter().filter_map(|u| u.as_str().map(String::from)).collect())
                .unwrap_or_default();
            if wanted.iter().all(|file| cached.iter().any(|c| c == file)) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        cached
    }

    /// Asserts that the page requested nothing but the app's own files, all found.
    pub fn assert_private(&self) {
        let log = self.log.lock().unwrap();
        assert!(log.foreign.is_empty(), "the page contacted other hosts: {:?}", log.foreign);
        let missing: Vec<_> = log.own.iter().filter(|r| r.status != 200).collect();
        assert!(missing.is_empty(), "requests for files the app does not have: {missing:?}");
        assert!(!log.own.is_empty(), "the proxy saw no request: routing is broken");
        eprintln!(
            "network: {} own static-asset requests, 0 foreign; {} Chromium infrastructure pings refused",
            log.own.len(),
            log.browser.len()
        );
    }

    /// Ends the session; the page must not have logged an error or thrown (no console errors).
    pub async fn finish(mut self) {
        let errors = self.console_errors().await;
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        assert!(errors.is_empty(), "console errors: {errors:#?}");
    }
}

/// The apollo11_crew fixture stretched to `width × height` and saved in `dir` as a JPEG
/// (quality 90), as a phone would save a photo of that size.
pub fn large_jpeg(dir: &TempDir, width: u32, height: u32) -> PathBuf {
    let img = image::open(crate::common::fixture("faces/apollo11_crew.jpg")).unwrap().to_rgb8();
    let big = image::imageops::resize(&img, width, height, image::imageops::FilterType::Triangle);
    let path = dir.0.join(format!("photo-{width}x{height}.jpg"));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode_image(&big).unwrap();
    path
}

/// `n` hard links to `source` in `dir`, named `{prefix}{k:03}.jpg`: the same photo under `n`
/// names, so each gets a card of its own. Returns their paths, ready for a file input.
pub fn photo_copies(dir: &TempDir, source: &Path, prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|k| {
            let path = dir.0.join(format!("{prefix}{k:03}.jpg"));
            std::fs::hard_link(source, &path).unwrap();
            path.display().to_string()
        })
        .collect()
}

/// A looping y4m video of `image` for Chromium's fake camera, written into `dir`; `filters` are
/// extra ffmpeg arguments (scaling, padding) before the frame rate.
pub fn fake_camera_video(dir: &TempDir, image: &Path, filters: &[&str], fps: u32, seconds: u32) -> PathBuf {
    let out = dir.0.join("camera.y4m");
    let status = Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error", "-loop", "1", "-i"])
        .arg(image)
        .args(filters)
        .args(["-r", &fps.to_string(), "-t", &seconds.to_string(), "-pix_fmt", "yuv420p"])
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .expect("ffmpeg not found: cargo xtask setup installs it");
    assert!(status.success(), "ffmpeg failed on {}", image.display());
    out
}

/// When the second face of [`fake_camera_face_entering`]'s video comes into view, in seconds
/// from the start of each loop; it stays until the loop ends.
pub const FACE_ENTERS_AT: f64 = 2.0;

/// A looping 640×480 y4m video for Chromium's fake camera at `fps` frames/s, written into `dir`:
/// two fixture faces of about 100 pixels on a grey background, the one on the left all the
/// time, the one on the right from [`FACE_ENTERS_AT`] seconds to the loop's end (`seconds`).
pub fn fake_camera_face_entering(dir: &TempDir, fps: u32, seconds: u32) -> PathBuf {
    let filter = format!(
        "[1]scale=300:300[a];[2]scale=300:352[b];[0][a]overlay=10:90[x];[x][b]overlay=330:64:enable='gte(t,{FACE_ENTERS_AT})'"
    );
    faces_on_grey(dir, "entering.y4m", &["faces/luciano_codait.png", "faces/grace_hopper.jpg"], &filter, fps, seconds)
}

/// A looping 640×480 y4m video for Chromium's fake camera at `fps` frames/s, written into `dir`:
/// a fixture face of about 80 pixels on a grey background, swinging left and right across
/// 150 pixels every two seconds (up to 235 pixels a second).
pub fn fake_camera_moving_face(dir: &TempDir, fps: u32, seconds: u32) -> PathBuf {
    let filter = "[1]scale=240:240[a];[0][a]overlay=x='200+75*sin(PI*t)':y=120";
    faces_on_grey(dir, "moving.y4m", &["faces/luciano_codait.png"], filter, fps, seconds)
}

/// A 640×480 grey video of `seconds` at `fps` frames/s with the fixture `faces` laid on it by
/// ffmpeg's `filter` (input 0 is the grey, input k the k-th face), written as `dir/name`.
fn faces_on_grey(dir: &TempDir, name: &str, faces: &[&str], filter: &str, fps: u32, seconds: u32) -> PathBuf {
    let out = dir.0.join(name);
    let mut c = Command::new("ffmpeg");
    c.args(["-y", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg(format!("color=c=gray:s=640x480:r={fps}:d={seconds}"));
    for face in faces {
        c.args(["-loop", "1", "-i"]).arg(crate::common::fixture(face));
    }
    let status = c
        .args(["-filter_complex", filter, "-r", &fps.to_string(), "-t", &seconds.to_string()])
        .args(["-pix_fmt", "yuv420p"])
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .expect("ffmpeg not found: cargo xtask setup installs it");
    assert!(status.success(), "ffmpeg failed to make {name}");
    out
}

/// Opens the live page on the CPU path (`query` adds to the address's query, `&workers=2`
/// say) with `video` as its camera, starts the camera, waits for `frames` classified frames
/// and starts recording the answers ([`record_live_frames`]).
pub async fn live_page_recording(video: &Path, query: &str, frames: u64) -> Harness {
    let h = Harness::start(&dist(), &camera_args(video)).await;
    h.open(&format!("/?backend=cpu{query}#/live")).await;
    h.wait_for("#engine[data-state='ready'][data-backend='CPU']", 300).await;
    h.wait_for("#camera-start", 60).await.click().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    let shown = || h.eval("+document.querySelector('#live-stats').dataset.frames");
    while shown().await.as_f64().unwrap_or(0.0) < frames as f64 {
        assert!(Instant::now() < deadline, "the live page classified fewer than {frames} frames in 240 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    record_live_frames(&h).await;
    h
}

/// Frames shown, frames searched and seconds between the first and the last of `log`.
pub fn frames_searched_seconds(log: &[LiveFrame]) -> (u64, u64, f64) {
    match (log.first(), log.last()) {
        (Some(a), Some(b)) => (b.frames - a.frames, b.searched - a.searched, (b.at_ms - a.at_ms) / 1000.0),
        _ => (0, 0, 0.0),
    }
}

/// Starts recording, in the page, every answer the live page shows: when (the page's clock, ms),
/// its frame count, its number of faces, how many frames were searched so far and the label shown.
pub async fn record_live_frames(h: &Harness) {
    h.eval(
        "(() => { const el = document.querySelector('#live-stats'); window.__mienFrames = [];
          new MutationObserver(() => { const d = el.dataset, log = window.__mienFrames;
            const last = log[log.length - 1];
            if (!last || last[1] !== +d.frames) log.push([performance.now(), +d.frames, +d.faces, +d.searched, d.emotion || '']); })
          .observe(el, { attributes: true }); return true; })()",
    )
    .await;
}

/// One answer shown by the live page (see [`record_live_frames`]).
#[derive(Debug, Clone)]
pub struct LiveFrame {
    pub at_ms: f64,
    pub frames: u64,
    pub faces: u64,
    pub searched: u64,
    /// The top emotion of the first face (empty without a face).
    pub emotion: String,
}

/// The answers recorded since [`record_live_frames`].
pub async fn live_frames(h: &Harness) -> Vec<LiveFrame> {
    let log = h.eval("window.__mienFrames || []").await;
    log.as_array()
        .map(|a| {
            a.iter()
                .map(|r| LiveFrame {
                    at_ms: r[0].as_f64().unwrap_or(0.0),
                    frames: r[1].as_u64().unwrap_or(0),
                    faces: r[2].as_u64().unwrap_or(0),
                    searched: r[3].as_u64().unwrap_or(0),
                    emotion: r[4].as_str().unwrap_or("").to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// For each time the second face of [`fake_camera_face_entering`]'s video came into view while
/// recorded: the live page's frames from its entry to the first answer with both faces (that
/// answer included), and the milliseconds between the two.
///
/// The page's frames carry no video time, so the entry is placed by the loop: the second face
/// leaves when the video starts over, which the page sees at once (its follow-up fails), and it
/// enters [`FACE_ENTERS_AT`] seconds later. Both ends are seen one answer's latency late, so the
/// count is exact to about one frame.
pub fn entering_delays(log: &[LiveFrame]) -> Vec<(u64, f64)> {
    let mut out = Vec::new();
    let mut i = 1;
    while i < log.len() {
        // The second face gone: one face from here on for most of the time it is away.
        if log[i - 1].faces >= 2 && log[i].faces == 1 {
            let left = log[i].at_ms;
            let enters = left + FACE_ENTERS_AT * 1000.0;
            let away = log[i..].iter().take_while(|f| f.faces == 1).last().map_or(left, |f| f.at_ms);
            if away - left >= FACE_ENTERS_AT * 1000.0 * 0.75 {
                if let Some(j) = (i..log.len()).find(|&j| log[j].faces >= 2 && log[j].at_ms >= left) {
                    let before = log[..j].iter().rev().find(|f| f.at_ms < enters).map_or(log[i].frames, |f| f.frames);
                    out.push((log[j].frames.saturating_sub(before), (log[j].at_ms - enters).max(0.0)));
                    i = j;
                }
            }
        }
        i += 1;
    }
    out
}

/// Chromium arguments that make `video` its only camera and grant camera access without a prompt.
pub fn camera_args(video: &Path) -> Vec<String> {
    vec![
        "--use-fake-device-for-media-stream".into(),
        "--use-fake-ui-for-media-stream".into(),
        format!("--use-file-for-fake-video-capture={}", video.display()),
    ]
}

pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("MIEN_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("mien-screenshots"))
}

async fn serve(listener: TcpListener, dist: PathBuf, authority: String, log: Arc<Mutex<Log>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        let (dist, authority, log) = (dist.clone(), authority.clone(), log.clone());
        tokio::spawn(async move {
            let _ = handle(stream, &dist, &authority, &log).await;
        });
    }
}

async fn handle(mut s: TcpStream, dist: &Path, authority: &str, log: &Mutex<Log>) -> std::io::Result<()> {
    loop {
        let mut buf = Vec::new();
        let mut tmp = [0u8; 8192];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut tmp).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&tmp[..n]);
        }
        let head = String::from_utf8_lossy(&buf).to_string();
        let mut words = head.lines().next().unwrap_or("").split_whitespace();
        let method = words.next().unwrap_or("").to_string();
        let target = words.next().unwrap_or("").to_string();

        let own_prefix = format!("http://{authority}");
        let (status, body, mime) = if let Some(path) = target.strip_prefix(&own_prefix) {
            let path = path.split(['?', '#']).next().unwrap_or("/");
            let rel = if path == "/" { "index.html" } else { path.trim_start_matches('/') };
            let file = dist.join(rel);
            let inside = !rel.split('/').any(|c| c == "..");
            match (inside, std::fs::read(&file)) {
                (true, Ok(bytes)) if method == "GET" || method == "HEAD" => (200, bytes, mime_of(&file)),
                _ => (404, b"not found".to_vec(), "text/plain"),
            }
        } else {
            (403, b"refused by the mien test proxy".to_vec(), "text/plain")
        };
        let entry = Request { method: method.clone(), target: target.clone(), status };
        {
            let mut log = log.lock().unwrap();
            if target.starts_with(&own_prefix) {
                log.own.push(entry);
            } else {
                let host = target.trim_start_matches("http://").trim_start_matches("https://");
                let host = host.split(['/', ':']).next().unwrap_or("");
                let from_page = head.to_ascii_lowercase().contains("\r\nsec-fetch-mode:");
                let infrastructure =
                    BROWSER_INFRASTRUCTURE.iter().any(|h| host == *h || host.ends_with(&format!(".{h}")));
                if infrastructure && (method == "CONNECT" || !from_page) {
                    log.browser.push(entry);
                } else {
                    log.foreign.push(entry);
                }
            }
        }
        // A served folder holding `.cross-origin-isolated` gets the headers that let its pages use
        // wasm threads (the JavaScript peers' benchmark); the app itself never needs them.
        let isolation = if dist.join(".cross-origin-isolated").exists() {
            "Cross-Origin-Opener-Policy: same-origin\r\nCross-Origin-Embedder-Policy: require-corp\r\n"
        } else {
            ""
        };
        let header = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: {mime}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{isolation}Connection: keep-alive\r\n\r\n",
            if status == 200 { "OK" } else { "Refused" },
            body.len()
        );
        s.write_all(header.as_bytes()).await?;
        if method != "HEAD" {
            s.write_all(&body).await?;
        }
        if method == "CONNECT" {
            return Ok(());
        }
    }
}

fn mime_of(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript",
        "wasm" => "application/wasm",
        "css" => "text/css",
        "json" => "application/json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// chromedriver's `POST /session/{id}/se/log {"type": "browser"}` (not part of W3C WebDriver).
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base_url: &url::Url, session_id: Option<&str>) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/se/log", session_id.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_string()))
    }
}
