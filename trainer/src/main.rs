//! `mien-trainer`: the native command line over the core crate — face detection now; datasets,
//! training and evaluation as they land.

mod bench;
mod detect;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "mien-trainer", version, about = "mien's native tools: detect faces, benchmark, train and evaluate")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Detect faces (box, score, five landmarks) in images.
    Detect {
        /// Image files (JPEG, PNG, GIF, WebP, BMP).
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Smallest face side to search for, in pixels.
        #[arg(long, default_value_t = 20.0)]
        min_face: f32,
        /// One JSON object per line and image instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Time face detection on a 640×480 frame with one face (median of N runs after warm-up).
    BenchDetect {
        /// Runs per setting.
        #[arg(long, default_value_t = 30)]
        runs: usize,
        /// The frame to time (default: the repository's tests/fixtures/bench/astronaut_640x480.jpg).
        #[arg(long)]
        image: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Detect { images, min_face, json } => detect::run(&images, min_face, json),
        Command::BenchDetect { runs, image } => bench::run(runs, image),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
