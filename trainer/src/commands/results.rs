//! `results`: the README's results table, from `reports/`.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::results::{table, with_table};

/// Print the table of how good the shipped model is, from the report files; with --readme,
/// write it into the README between its results markers (--check: only say whether it is
/// up to date).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The reports folder (default: the repository's reports/).
    #[arg(long)]
    pub reports: Option<PathBuf>,
    /// The README to write the table into.
    #[arg(long)]
    pub readme: Option<PathBuf>,
    /// Change nothing; fail if --readme's table differs from the reports'.
    #[arg(long, requires = "readme")]
    pub check: bool,
}

pub fn run(a: Args) -> Result<()> {
    let reports = a.reports.unwrap_or_else(|| crate::fsutil::repo_root().join("reports"));
    let table = table(&reports)?;
    let Some(readme) = a.readme else {
        print!("{table}");
        return Ok(());
    };
    let old = std::fs::read_to_string(&readme).with_context(|| format!("reading {}", readme.display()))?;
    let new = with_table(&old, &table).with_context(|| readme.display().to_string())?;
    if a.check {
        anyhow::ensure!(
            new == old,
            "{}'s results table differs from {}: run `cargo xtask trainer results --readme {}`",
            readme.display(),
            reports.display(),
            readme.display()
        );
        eprintln!("{} is up to date with {}", readme.display(), reports.display());
    } else if new != old {
        crate::fsutil::write_atomic(&readme, new.as_bytes())?;
        eprintln!("results table written into {}", readme.display());
    }
    Ok(())
}
