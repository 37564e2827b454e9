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
    /// One JSON object per line and image instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    crate::detect::run(&a.images, a.min_face, a.json)
}
