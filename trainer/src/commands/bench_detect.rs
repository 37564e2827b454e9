//! `bench-detect`: how long detection and classification take natively.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

/// Time face detection on a 640×480 frame with one face (median of N runs after warm-up).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Runs per setting.
    #[arg(long, default_value_t = 30)]
    pub runs: usize,
    /// The frame to time (default: the repository's tests/fixtures/bench/astronaut_640x480.jpg).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Also time the expression network alone at these widths (e.g. 1,1.5,2): what a wider
    /// model would cost per face.
    #[arg(long, value_delimiter = ',')]
    pub widths: Vec<f64>,
    /// Also run `detect` on 12, 48 and 108-megapixel JPEGs made from a fixture, reporting each
    /// command's time and peak memory.
    #[arg(long)]
    pub large_photos: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    crate::bench::run(a.runs, a.image, &a.widths, a.large_photos)
}
