//! `mien-trainer bench-detect`: native CPU time of face detection on a 640×480 one-face frame,
//! and of the shipped expression model on that face (crop + classification, per face).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use mien::Frame;

use crate::detect::detector;

pub fn default_bench_image() -> PathBuf {
    crate::repo_root().join("tests/fixtures/bench/astronaut_640x480.jpg")
}

pub fn run(runs: usize, image: Option<PathBuf>, widths: &[f64], large: bool) -> Result<ExitCode> {
    let path = image.unwrap_or_else(default_bench_image);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let frame = Frame::decode(&bytes).with_context(|| format!("decoding {}", path.display()))?;
    let runs = runs.max(1);
    println!(
        "native CPU (burn flex, {} threads, {} build), {}×{} frame {}, {runs} runs after 3 warm-up runs",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        if cfg!(debug_assertions) { "dev profile, opt-level 2" } else { "release" },
        frame.width(),
        frame.height(),
        path.display()
    );
    for min_face in [20.0, 40.0] {
        let det = detector(min_face)?;
        let mut faces = 0;
        for _ in 0..3 {
            faces = det.detect(&frame)?.len();
        }
        let times = timings(runs, || {
            let _ = det.detect(&frame);
        });
        println!(
            "min face {min_face:>3}: median {:7.1} ms  min {:7.1} ms  p90 {:7.1} ms  ({faces} face)",
            times[times.len() / 2],
            times[0],
            times[(times.len() * 9 / 10).min(times.len() - 1)]
        );
    }
    // Following the face from its box, as the live page does between searches (O-Net alone, on
    // the cascade's working copy for a 40-pixel smallest face).
    let det = detector(40.0)?;
    let boxes: Vec<[f32; 4]> = det.detect(&frame)?.iter().take(1).map(|f| f.bbox).collect();
    if !boxes.is_empty() {
        // And the periodic search while it holds that face: followed, the rest searched.
        for (what, refresh) in [("follow one face (O-Net alone)", false), ("refresh: follow it, search the rest", true)]
        {
            let step = || if refresh { det.refresh(&frame, &boxes) } else { det.follow(&frame, &boxes) };
            for _ in 0..3 {
                step()?;
            }
            let times = timings(runs.max(30), || {
                let _ = step();
            });
            println!(
                "{what}: median {:7.2} ms  min {:7.2} ms  p90 {:7.2} ms",
                times[times.len() / 2],
                times[0],
                times[(times.len() * 9 / 10).min(times.len() - 1)]
            );
        }
    }
    // The shipped classifier on the frame's face: aligned crop + network (with the manifest's
    // mirror-image averaging, as the app runs it).
    let classifier = crate::evaluate::load_classifier(&crate::evaluate::shipped_model_dir())?;
    let faces = detector(40.0)?.detect(&frame)?;
    anyhow::ensure!(!faces.is_empty(), "no face in {}", path.display());
    let classify = || mien::pipeline::classify_faces(&classifier, &frame, faces[..1].to_vec());
    for _ in 0..3 {
        pollster::block_on(classify())?;
    }
    let times = timings(runs.max(30), || {
        let _ = pollster::block_on(classify());
    });
    println!(
        "classify one face (crop + network{}): median {:7.2} ms  min {:7.2} ms  p90 {:7.2} ms",
        if classifier.manifest().flip_average { ", with its mirror image" } else { "" },
        times[times.len() / 2],
        times[0],
        times[(times.len() * 9 / 10).min(times.len() - 1)]
    );
    // The crop on its own (the part of the step that is not the network).
    let crop_times = timings(runs.max(30), || {
        let _ = mien::pipeline::crops_for(&classifier, &frame, &faces[..1]);
    });
    println!("  of which the crop: median {:7.2} ms  min {:7.2} ms", crop_times[crop_times.len() / 2], crop_times[0]);
    for &width in widths {
        for layout in mien::classify::LAYOUTS {
            time_width(width, layout, runs.max(30))?;
        }
    }
    if large {
        large_photos()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `mien-trainer detect` on 12, 48 and 108-megapixel JPEGs made from a fixture: wall time and
/// peak memory of the whole command (its own process, so the photos made here do not count).
fn large_photos() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("mien-bench-large-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let source = image::open(crate::repo_root().join("tests/fixtures/faces/apollo11_crew.jpg"))?.to_rgb8();
    let exe = std::env::current_exe()?;
    for (w, h) in [(4000u32, 3000u32), (8000, 6000), (12000, 9000)] {
        let path = dir.join(format!("photo-{w}x{h}.jpg"));
        {
            let big = image::imageops::resize(&source, w, h, image::imageops::FilterType::Triangle);
            let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode_image(&big)?;
        }
        let t = Instant::now();
        let out = std::process::Command::new(&exe).arg("detect").arg("--peak-memory").arg(&path).output()?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        anyhow::ensure!(out.status.success(), "detect failed on {}: {stderr}", path.display());
        println!(
            "native detect {w:>5}×{h:<5} ({:>3.0} MP JPEG): {ms:6.0} ms for the whole command, {}; {}",
            (w * h) as f64 / 1e6,
            stderr.trim(),
            stdout.lines().next().unwrap_or("").rsplit(", ").next().unwrap_or("")
        );
        std::fs::remove_file(&path).ok();
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// Wall time of `runs` calls of `f`, in milliseconds, sorted (so `[0]` is the minimum and
/// `[len / 2]` the median). `runs` must be at least 1.
fn timings(runs: usize, mut f: impl FnMut()) -> Vec<f64> {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times
}

/// The network alone at another width and layout (random weights; one face and its mirror image, as the
/// app runs it): what a wider model would cost per face before any training, since the time
/// does not depend on the weights' values. Timed as trained and with its batch norms folded into
/// the convolutions, as the app runs it: the difference is what folding saves.
fn time_width(width: f64, layout: u32, runs: usize) -> Result<()> {
    use mien::burn::prelude::*;
    let device = Device::flex();
    let net = mien::classify::ExpressionNetConfig::new(7).with_width(width).with_layout(layout).init(&device);
    let params = mien::burn::module::Module::num_params(&net);
    let x = Tensor::<4>::random([1, 1, 48, 48], mien::burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let time = |net: &mien::classify::ExpressionNet| {
        let once = || {
            let p = net.probabilities(x.clone(), true);
            p.into_data().convert::<f32>().try_into_vec::<f32>().map(|v| v.len()).unwrap_or(0)
        };
        for _ in 0..3 {
            once();
        }
        let times = timings(runs, || {
            once();
        });
        (times[times.len() / 2], times[0])
    };
    // Interleaved, so that both see the same machine load.
    let (plain, _) = time(&net);
    let folded_net = net.clone().fold_batch_norm();
    let (folded, folded_min) = time(&folded_net);
    let (plain2, plain_min) = time(&net);
    println!(
        "network alone, layout {layout}, width {width}: {params} parameters, median {:7.2} ms  min {:7.2} ms \
         with batch norm folded; {:7.2} / {:7.2} ms  min {:7.2} ms as trained (one face + mirror image)",
        folded, folded_min, plain, plain2, plain_min
    );
    Ok(())
}
