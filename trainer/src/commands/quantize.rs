//! `quantize`: a weight file compacted for download.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Compact a safetensors weight file for download: large tensors to int8 with per-channel
/// scales, the other weights to f16 (how the app ships its weights: a third of the f32 size).
/// The app, the CLI and the trainer load either form.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// f32 safetensors file (for example assets/mtcnn/reference/onet.safetensors).
    pub input: PathBuf,
    /// Where to write the compact file.
    pub output: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    quantize_file(&a.input, &a.output)
}

/// `mien-trainer quantize`: writes `input`'s weights compacted the way the MTCNN files are (f16, and
/// int8 with per-channel scales for tensors of `mien::weights::INT8_MIN_ELEMENTS`+ elements; see
/// `mien::weights::quantize`), and says how much smaller the file became. (`export` compacts the
/// expression classifier itself, with its own threshold.)
fn quantize_file(input: &Path, output: &Path) -> Result<()> {
    let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let name = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let quantized = mien::weights::quantize(&bytes, &name, mien::weights::INT8_MIN_ELEMENTS)?;
    crate::fsutil::write_atomic(output, &quantized)?;
    println!("{} ({} B) -> {} ({} B, f16 + int8)", input.display(), bytes.len(), output.display(), quantized.len());
    Ok(())
}
