//! `cargo xtask`: the project's own commands, so that a fresh machine needs nothing but cargo.
//!
//! - `cargo xtask serve`  builds the web app with the shipped models and serves it.
//! - `cargo xtask test`   installs what the tests need, then runs every test: native and browser.
//! - `cargo xtask setup`  only the installs (idempotent; tools live outside the clone).
//! - `cargo xtask build`  only the web build (`dist/`).
//! - `cargo xtask bench`  the detection benchmark, natively and in headless Chromium.
//! - `cargo xtask trainer ARGS`  the trainer (`mien-trainer ARGS`: train, evaluate, detect, ...),
//!   the binary of the test build, so it costs no second build of burn.
//! - `cargo xtask fuzz`   every fuzz target for N executions (nightly + cargo-fuzz; not part of
//!   `test`, whose suite replays the kept inputs on stable).
//! - `cargo xtask screenshots`  the browser tests, writing the screenshots in `docs/screenshots/`.
//! - `cargo xtask gpu-bundle`  what `scripts/gpu-train.sh` needs on a GPU machine without cargo.
//!
//! Tools are pinned here and installed into `$MIEN_CACHE/tools` (default `~/.cache/mien/tools`),
//! so repeated runs and fresh clones reuse them.

use std::env;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{exit, Command, Stdio};
use std::time::Instant;

const WASM_BINDGEN_VERSION: &str = "0.2.130";
const TRUNK_VERSION: &str = "0.21.14";
const BINARYEN_VERSION: &str = "132";
const CARGO_FUZZ_VERSION: &str = "0.13.2";
const FUZZ_TARGETS: &[&str] =
    &["image_to_crop", "image_to_faces", "weights", "model_manifest", "dataset_files", "report_json"];
/// Debian packages the tests need: the browser, its driver, ffmpeg for the fake camera's video,
/// and Mesa's lavapipe (a Vulkan driver on the CPU) with the Vulkan loader, so that the trainer's
/// GPU path (`--device gpu`, wgpu) runs in CI too (trainer/tests/gpu.rs).
const APT_PACKAGES: &[&str] = &["chromium", "chromium-driver", "ffmpeg", "mesa-vulkan-drivers", "libvulkan1"];

mod gpu_bundle;

type Result<T = ()> = std::result::Result<T, String>;

fn main() {
    let args: Vec<String> = env::args().skip(1).collect();
    let started = Instant::now();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup(),
        Some("build") => setup().and_then(|_| build_web(args.iter().any(|a| a == "--dev"))),
        Some("serve") => serve(&args[1..]),
        Some("test") => test(),
        Some("bench") => bench(&args[1..]),
        Some("trainer") => trainer(&args[1..]),
        Some("sizes") => download_sizes(),
        Some("peers") => fetch_peers(),
        Some("fuzz") => fuzz(&args[1..]),
        Some("gpu-bundle") => gpu_bundle::gpu_bundle(&args[1..]),
        Some("screenshots") => screenshots(),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n  serve [--port N] [--dev]  build the web app and serve it on 127.0.0.1\n  test                      install tools, run every test (native + headless Chromium)\n  setup                     install the pinned tools only\n  build [--dev]             build the web app into dist/\n  bench [--runs N]          detection benchmark (native CPU, browser CPU, browser WebGPU, Human beside the live page)\n  sizes                     what a first visit downloads, on the CPU and the WebGPU path\n  peers                     fetch Human (npm) for the benchmark's comparison\n  trainer ARGS              run mien-trainer ARGS (the test build's binary: no second build of burn)\n  fuzz [--runs N] [--max-time S] [TARGET...]  run fuzz targets N times each (default 1000000; nightly)\n  screenshots               run the browser tests, writing their screenshots into docs/screenshots/\n  gpu-bundle [--data DIR]   trainer binary + datasets + Vulkan loader in .device/, for training on a GPU machine without cargo or network (scripts/gpu-train.sh)"
            );
            exit(2);
        }
    };
    match result {
        Ok(()) => eprintln!("xtask: done in {:.0} s", started.elapsed().as_secs_f64()),
        Err(e) => {
            eprintln!("xtask: error: {e}");
            exit(1);
        }
    }
}

fn root() -> PathBuf {
    // `cargo run` sets CARGO_MANIFEST_DIR at run time too; prefer it, since a binary reused from a
    // shared target dir may have been compiled in another checkout.
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).filter(|d| d.join("Cargo.toml").exists());
    let manifest_dir = manifest_dir.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir.parent().expect("xtask lives in the workspace").to_path_buf()
}

fn cache_dir() -> PathBuf {
    if let Some(dir) = env::var_os("MIEN_CACHE") {
        return PathBuf::from(dir);
    }
    let home = env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".cache").join("mien")
}

fn tools_dir() -> PathBuf {
    cache_dir().join("tools")
}

/// PATH with the pinned tools first.
fn tool_path() -> OsString {
    let mut paths = vec![tools_dir().join("bin"), tools_dir().join("node/node_modules/.bin")];
    if let Some(p) = env::var_os("PATH") {
        paths.extend(env::split_paths(&p));
    }
    env::join_paths(paths).expect("valid PATH")
}

fn cmd(program: &str) -> Command {
    let mut c = Command::new(program);
    c.env("PATH", tool_path()).env("TRUNK_SKIP_VERSION_CHECK", "true").current_dir(root());
    c
}

fn run(c: &mut Command) -> Result {
    eprintln!("xtask: $ {}", describe(c));
    let status = c.status().map_err(|e| format!("could not start {}: {e}", describe(c)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed ({status})", describe(c)))
    }
}

fn describe(c: &Command) -> String {
    let mut s = c.get_program().to_string_lossy().into_owned();
    for a in c.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn output_of(program: &str, args: &[&str]) -> Option<String> {
    let out = cmd(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

fn setup() -> Result {
    let tools = tools_dir();
    std::fs::create_dir_all(&tools).map_err(|e| format!("cannot create {}: {e}", tools.display()))?;

    // The wasm32 target comes with rust-toolchain.toml; this is a no-op when present.
    run(cmd("rustup").args(["target", "add", "wasm32-unknown-unknown"]))?;

    if !Path::new("/usr/bin/chromedriver").exists() || !Path::new("/usr/bin/ffmpeg").exists() || !has_lavapipe() {
        if !is_root() {
            return Err(format!(
                "Chromium, ChromeDriver, ffmpeg or Mesa's Vulkan driver are missing: run `sudo apt-get install -y {}`",
                APT_PACKAGES.join(" ")
            ));
        }
        run(cmd("apt-get").arg("update").arg("-qq"))?;
        run(cmd("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(APT_PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }

    let root_arg = tools.to_string_lossy().into_owned();
    if !output_of("wasm-bindgen", &["--version"]).is_some_and(|v| v.contains(WASM_BINDGEN_VERSION)) {
        // Without --locked: the CLI's own lockfile wants a crate version the registry lacks.
        run(cmd("cargo").args([
            "install",
            "--root",
            &root_arg,
            "wasm-bindgen-cli",
            "--version",
            WASM_BINDGEN_VERSION,
        ]))?;
    }
    if !output_of("trunk", &["--version"]).is_some_and(|v| v.contains(TRUNK_VERSION)) {
        // trunk's own release profile is fat LTO in one codegen unit: a dev server built that way
        // took 10 of a cold CI run's 67 minutes. Plain optimised codegen is fast enough to serve files.
        run(cmd("cargo")
            .args(["install", "--locked", "--root", &root_arg, "trunk", "--version", TRUNK_VERSION])
            .env("CARGO_PROFILE_RELEASE_LTO", "off")
            .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16"))?;
    }
    if !output_of("wasm-opt", &["--version"]).is_some_and(|v| v.contains(&format!("version {BINARYEN_VERSION}"))) {
        let node = tools.join("node");
        std::fs::create_dir_all(&node).map_err(|e| e.to_string())?;
        run(cmd("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&node)
            .arg(format!("binaryen@{BINARYEN_VERSION}")))?;
    }
    Ok(())
}

/// Mesa's lavapipe ICD and the Vulkan loader it is reached through.
fn has_lavapipe() -> bool {
    let icd = std::fs::read_dir("/usr/share/vulkan/icd.d")
        .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("lvp_icd")))
        .unwrap_or(false);
    let loader = ["/usr/lib/x86_64-linux-gnu/libvulkan.so.1", "/usr/lib/aarch64-linux-gnu/libvulkan.so.1"]
        .iter()
        .any(|p| Path::new(p).exists());
    icd && loader
}

fn is_root() -> bool {
    output_of("id", &["-u"]).is_some_and(|s| s.trim() == "0")
}

/// trunk, told which commit it builds: the app's *Auto* backend choice is measured again when
/// the build changes.
fn trunk() -> Command {
    let mut c = cmd("trunk");
    if let Some(commit) = output_of("git", &["rev-parse", "--short=12", "HEAD"]) {
        c.env("MIEN_BUILD_ID", commit.trim());
    }
    c
}

fn build_web(dev: bool) -> Result {
    let mut c = trunk();
    c.arg("build");
    if !dev {
        c.arg("--release");
    }
    run(&mut c)
}

fn serve(args: &[String]) -> Result {
    setup()?;
    let dev = args.iter().any(|a| a == "--dev");
    let port =
        args.iter().position(|a| a == "--port").and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| "8080".into());
    let mut c = trunk();
    c.args(["serve", "--address", "127.0.0.1", "--port", &port]);
    if !dev {
        c.arg("--release");
    }
    run(&mut c)
}

fn test() -> Result {
    setup()?;
    let t = Instant::now();
    run(cmd("cargo").args(["fmt", "--all", "--check"]))?;
    run(cmd("cargo").arg("test").args(NATIVE_PACKAGES))?;
    eprintln!("xtask: native tests took {:.0} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    build_web(false)?;
    eprintln!("xtask: web build took {:.0} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    run(&mut browser_tests("browser", &[]))?;
    eprintln!("xtask: browser tests took {:.0} s", t.elapsed().as_secs_f64());
    Ok(())
}

/// The packages every native cargo command of xtask builds (the web app's two builds are wasm
/// only). One list, because cargo unifies features over the selected packages: a command that
/// selects others builds all of burn again.
const NATIVE_PACKAGES: [&str; 5] = ["--workspace", "--exclude", "mien-web", "--exclude", "mien-gpu"];

/// `cargo test` of one browser test target against `dist/`: ignored tests included, one at a time
/// (two browsers sharing 2 cores would time and starve each other). Same package selection as the
/// native run, and `--bins` too: without the trainer's binary (clap) in the build, cargo hashes
/// the host crates shared with it differently and builds all of burn a second time (20 minutes of
/// a cold CI run); the binaries have no ignored tests, so nothing more runs.
fn browser_tests(target: &str, extra: &[&str]) -> Command {
    let mut c = cmd("cargo");
    c.arg("test")
        .args(NATIVE_PACKAGES)
        .args(["--bins", "--test", target, "--", "--ignored", "--test-threads=1"])
        .args(extra)
        .env("MIEN_DIST", root().join("dist"));
    c
}

/// Every screenshot in `docs/screenshots/`, taken anew by the browser tests from the current
/// build, model and reports (the same tests as `test`, which writes them to the temp dir).
fn screenshots() -> Result {
    setup()?;
    build_web(false)?;
    run(browser_tests("browser", &[]).env("MIEN_SCREENSHOTS", root().join("docs/screenshots")))
}

fn bench(args: &[String]) -> Result {
    setup()?;
    let runs =
        args.iter().position(|a| a == "--runs").and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| "30".into());
    trainer(&["bench-detect".into(), "--runs".into(), runs.clone(), "--large-photos".into()])?;
    build_web(false)?;
    download_sizes()?;
    if let Err(e) = fetch_peers() {
        eprintln!(
            "xtask: Human, the JavaScript tool the live page is compared with, is not there ({e}); that row is skipped"
        );
    }
    run(browser_tests("browser_bench", &["--nocapture"])
        .env("MIEN_BENCH_RUNS", &runs)
        .env("MIEN_PEERS", cache_dir().join("peers")))
}

/// The JavaScript tool the benchmark compares the live page with: Human and tfjs's wasm backend,
/// from npm, unpacked into `~/.cache/mien/peers` (where `bench_human_beside_live_in_chromium`
/// looks). Only the benchmark needs them; nothing of theirs ships.
fn fetch_peers() -> Result {
    let peers = cache_dir().join("peers");
    std::fs::create_dir_all(&peers).map_err(|e| format!("cannot create {}: {e}", peers.display()))?;
    for (package, tarball, unpacked) in [
        ("@vladmandic/human@3.3.6", "vladmandic-human-3.3.6.tgz", "human-3.3.6"),
        ("@tensorflow/tfjs-backend-wasm@4.22.0", "tensorflow-tfjs-backend-wasm-4.22.0.tgz", "tfjs-wasm"),
    ] {
        if peers.join(unpacked).exists() {
            continue;
        }
        run(cmd("npm").args(["pack", "--silent", package]).current_dir(&peers))?;
        let staging = peers.join(format!("{unpacked}.partial"));
        std::fs::create_dir_all(&staging).map_err(|e| e.to_string())?;
        run(cmd("tar").arg("xzf").arg(peers.join(tarball)).arg("-C").arg(&staging))?;
        // Human's files straight under human-3.3.6/; tfjs's under tfjs-wasm/package/.
        let from = if unpacked == "human-3.3.6" { staging.join("package") } else { staging.clone() };
        std::fs::rename(&from, peers.join(unpacked)).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_dir_all(&staging);
    }
    Ok(())
}

/// Runs `mien-trainer ARGS` in the repository root, with the binary of [`trainer_binary`].
fn trainer(args: &[String]) -> Result {
    run(Command::new(trainer_binary()?).current_dir(root()).args(args))
}

/// The trainer binary of the test build (dev profile), built by the same cargo command as the
/// native tests: `cargo run -p mien-trainer` or `cargo build -p mien-trainer` select fewer
/// packages, so cargo unifies the shared crates' features differently and builds all of burn a
/// second time (46 minutes on a 2-core x86 CPU) for a binary that times or trains no differently.
fn trainer_binary() -> Result<PathBuf> {
    run(cmd("cargo").arg("test").args(NATIVE_PACKAGES).arg("--no-run"))?;
    let target = env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"));
    let target = if target.is_relative() { root().join(target) } else { target };
    Ok(target.join("debug").join(if cfg!(windows) { "mien-trainer.exe" } else { "mien-trainer" }))
}

/// Runs each fuzz target (or the named ones) for `--runs` executions, from its seeds plus the
/// corpus grown by earlier runs (`$MIEN_CACHE/fuzz-corpus`), and prints libFuzzer's count.
/// A crash stops with the input saved under fuzz/artifacts/: fix it, then keep the input in
/// fuzz/regressions/<target>/ so the stable test suite replays it.
fn fuzz(args: &[String]) -> Result {
    let runs = args.iter().position(|a| a == "--runs").and_then(|i| args.get(i + 1)).cloned();
    let runs = runs.unwrap_or_else(|| "1000000".into());
    // An optional wall-time cap per target (libFuzzer stops at whichever comes first).
    let max_time = args.iter().position(|a| a == "--max-time").and_then(|i| args.get(i + 1)).cloned();
    let named: Vec<&str> = args.iter().map(String::as_str).filter(|a| FUZZ_TARGETS.contains(a)).collect();
    let targets = if named.is_empty() { FUZZ_TARGETS.to_vec() } else { named };
    if output_of("cargo", &["+nightly", "fuzz", "--version"]).is_none_or(|v| !v.contains(CARGO_FUZZ_VERSION)) {
        run(cmd("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
        run(cmd("cargo").args(["+nightly", "install", "--locked", "cargo-fuzz", "--version", CARGO_FUZZ_VERSION]))?;
    }
    let mut summary = Vec::new();
    for t in targets {
        let sanitizer = fuzz_sanitizer(t);
        // One target directory per sanitizer: switching flags in one would rebuild burn each time.
        let target_dir = cache_dir().join(format!("fuzz-target-{sanitizer}"));
        let corpus = cache_dir().join("fuzz-corpus").join(t);
        std::fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
        let seeds = root().join("fuzz/seeds").join(t);
        let started = Instant::now();
        let mut child = cmd("cargo")
            .current_dir(root().join("fuzz"))
            .args(["+nightly", "fuzz", "run", "--sanitizer", sanitizer, t])
            // burn's kernels without coverage instrumentation (see the wrapper); the cfg only
            // keeps such a build apart from an instrumented one in cargo's fingerprints.
            .env("RUSTC_WRAPPER", root().join("fuzz/uninstrumented-rustc"))
            .env("RUSTFLAGS", "--cfg=mien_uninstrumented_kernels")
            // libFuzzer runs one small input at a time: handing its tensors to a thread pool
            // costs more than it saves (a 40×40 face: 54 ms on one thread, 63 ms on two).
            .env("RAYON_NUM_THREADS", "1")
            .arg("--target-dir")
            .arg(&target_dir)
            .arg(&corpus)
            .arg(&seeds)
            .args(["--", &format!("-runs={runs}"), "-max_len=65536", "-rss_limit_mb=4096", "-timeout=30"])
            .args(["-print_final_stats=1"])
            .args(max_time.iter().map(|s| format!("-max_total_time={s}")))
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("could not start cargo fuzz: {e}"))?;
        // libFuzzer's progress (its "pulse" lines, at every power of two executions) goes on to
        // the terminal as it comes; its last lines are kept to show if the target stops.
        let mut last = std::collections::VecDeque::new();
        let mut done = String::new();
        let stderr = child.stderr.take().ok_or("cargo fuzz has no stderr")?;
        for line in BufReader::new(stderr).lines().map_while(std::io::Result::ok) {
            if line.contains("\tpulse ") || line.starts_with("Done ") || line.starts_with("INFO: Running") {
                eprintln!("{t}: {line}");
            }
            if line.starts_with("Done ") {
                done = line.clone();
            }
            if last.len() == 60 {
                last.pop_front();
            }
            last.push_back(line);
        }
        let status = child.wait().map_err(|e| format!("cargo fuzz: {e}"))?;
        if !status.success() {
            eprintln!("{}", last.iter().cloned().collect::<Vec<_>>().join("\n"));
            return Err(format!(
                "fuzz target {t} stopped ({status}): a crash leaves its input in fuzz/artifacts/{t}/; an interrupted run, its counts above"
            ));
        }
        let secs = started.elapsed().as_secs_f64();
        let line = format!("fuzz {t} (sanitizer: {sanitizer}): {done} ({secs:.0} s wall), 0 crashes");
        eprintln!("xtask: {line}");
        summary.push(line);
    }
    for line in summary {
        println!("{line}");
    }
    Ok(())
}

/// The sanitizer a fuzz target runs under. AddressSanitizer for all but `image_to_faces`: it
/// checks every memory access of burn's kernels too, and the whole cascade ran ~10 times a second
/// under it against 47 without (both with full coverage instrumentation; 199 without it in burn,
/// see fuzz/uninstrumented-rustc). That target runs without it (Rust's own bounds and overflow
/// checks stay on); the bytes it starts from (decoding and cropping) are fuzzed under
/// AddressSanitizer by `image_to_crop`.
fn fuzz_sanitizer(target: &str) -> &'static str {
    if target == "image_to_faces" {
        "none"
    } else {
        "address"
    }
}

/// What a first visit downloads: every file in dist/ the page fetches, raw and gzip -9, on the
/// CPU path; then what the WebGPU path fetches on top (the engine's WebGPU build); then the files
/// fetched only on demand or never.
fn download_sizes() -> Result {
    let dist = root().join("dist");
    let mut files = Vec::new();
    collect_files(&dist, &mut files)?;
    files.sort();
    // The reports' PNG plots and the READMEs ship for people reading dist/, but the page never
    // fetches them; the f32 reference weights and golden outputs are fetched by the self-test only.
    let on_demand = |f: &Path| {
        f.starts_with(dist.join("assets/mtcnn/reference"))
            || f.ends_with("golden_outputs.json")
            || f.extension().is_some_and(|e| e == "md")
            || (f.starts_with(dist.join("reports")) && f.extension().is_some_and(|e| e == "png"))
    };
    let webgpu = |f: &Path| f.file_name().is_some_and(|n| n.to_string_lossy().starts_with("mien-gpu"));
    let (later, fetched): (Vec<PathBuf>, Vec<PathBuf>) = files.into_iter().partition(|f| on_demand(f));
    let (gpu, first): (Vec<PathBuf>, Vec<PathBuf>) = fetched.into_iter().partition(|f| webgpu(f));
    println!("download size of dist/ (what a first visit fetches on the CPU path):");
    let cpu_path = sizes_table(&dist, &first)?;
    println!("what the WebGPU path fetches on top (the engine's WebGPU build):");
    let gpu_extra = sizes_table(&dist, &gpu)?;
    println!(
        "  {:<40} {:>29} B gzip ({:.2} MB gzip)",
        "first visit on the WebGPU path",
        cpu_path + gpu_extra,
        (cpu_path + gpu_extra) as f64 / 1e6
    );
    println!("fetched only by the self-test, or never (READMEs, plots):");
    sizes_table(&dist, &later).map(|_| ())
}

/// Prints each file's size and the total; returns the gzip total.
fn sizes_table(dist: &Path, files: &[PathBuf]) -> Result<u64> {
    let (mut raw_total, mut gz_total) = (0u64, 0u64);
    for f in files {
        let raw = std::fs::metadata(f).map_err(|e| e.to_string())?.len();
        let gz = output_of("sh", &["-c", &format!("gzip -9 -c '{}' | wc -c", f.display())])
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or("gzip failed")?;
        raw_total += raw;
        gz_total += gz;
        println!("  {:<40} {:>10} B raw {:>10} B gzip", f.strip_prefix(dist).unwrap_or(f).display(), raw, gz);
    }
    println!(
        "  {:<40} {:>10} B raw {:>10} B gzip ({:.2} MB gzip)",
        "total",
        raw_total,
        gz_total,
        gz_total as f64 / 1e6
    );
    Ok(gz_total)
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result {
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}
