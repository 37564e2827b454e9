//! `detect`: faces in image files.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

/// Detect faces (box, score, five landmarks) in images.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Image files (JPEG, PNG, GIF, WebP, BMP).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Smallest face side to search for, in pixels.
    #[arg(long, default_value_t = 20.0)]
    pub min_face: f32,
    /// Smallest face side to search for, as a fraction of the photo's shorter side (the larger
    /// of this and --min-face applies). Smaller finds smaller faces in large photos and costs
    /// time and memory that grow with the photo's area; 0 searches every face down to --min-face.
    #[arg(long, default_value_t = mien::detect::DEFAULT_MIN_FACE_FRACTION)]
    pub min_face_fraction: f32,
    /// Skip the turned look: where no face is found, do not search the image again rotated.
    /// Images without a face take about a fifth of the time; heads tilted far from upright are
    /// missed.
    #[arg(long)]
    pub upright: bool,
    /// One JSON object per line and image instead of a table.
    #[arg(long)]
    pub json: bool,
    /// At the end, print the command's peak memory (resident set) to stderr (Linux).
    #[arg(long)]
    pub peak_memory: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let code = crate::detect::run(&a.images, a.min_face, a.min_face_fraction, a.upright, a.json)?;
    if a.peak_memory {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        match status.lines().find_map(|l| l.strip_prefix("VmHWM:")) {
            Some(kb) => {
                let kb: f64 = kb.trim().trim_end_matches("kB").trim().parse().unwrap_or(f64::NAN);
                eprintln!("peak memory {:.0} MB", kb / 1024.0);
            }
            None => eprintln!("peak memory: unknown on this system"),
        }
    }
    Ok(code)
}
