//! FERPlus labels for FER2013: ten crowd votes per image (Barsoum et al., 2016; MIT-licensed
//! labels, `microsoft/FERPlus`), which replace FER2013's single, often wrong label — either as a
//! majority label or as a soft target (the share of votes per emotion).
//!
//! The votes file (`fer2013new.csv`) is row-aligned with the original `fer2013.csv`; images in
//! Kaggle's folder layout reach their row through `fer2013_row_alignment.csv` (beside the
//! folders; see `../shared/data/PROVENANCE.md`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mien::Emotion;

use crate::datasets::{Dataset, DatasetError, Layout};

/// How the ten votes become a training target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FerPlusMode {
    /// The emotion with more than half of the (cleaned) votes; images without one are dropped.
    Majority,
    /// The vote shares as a probability target; the label is the most voted emotion.
    Soft,
}

/// Where a run's FER2013 labels come from when they are FERPlus's (part of a run's settings).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, clap::Args)]
#[group(requires = "ferplus.dir")]
pub struct FerPlusLabels {
    /// Use FERPlus's ten-annotator votes as labels: the folder with fer2013new.csv (e.g.
    /// ../shared/data/ferplus). A FER2013 folder also needs its fer2013_row_alignment.csv.
    #[arg(long = "ferplus", id = "ferplus.dir", value_name = "DIR", required = false)]
    pub dir: String,
    /// soft: train on the vote shares; majority: on the majority emotion (images without one
    /// are dropped).
    #[arg(long = "ferplus-mode", id = "ferplus.mode", value_name = "MODE", value_enum, default_value = "soft")]
    pub mode: FerPlusMode,
}

/// The ten vote counts of one FER2013 row, in FERPlus's column order: the eight emotions (the
/// order of [`Emotion::ALL`]), then "unknown" and "not a face".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Votes(pub [u8; 10]);

impl Votes {
    /// The target these votes give in `mode`, or `None` when FERPlus would drop the image (no
    /// emotion has enough votes, or most annotators said "unknown" / "not a face").
    ///
    /// As FERPlus's own training code: a class with a single vote is annotator noise and is
    /// removed first; a majority means more than half of the remaining votes.
    pub fn target(&self, mode: FerPlusMode) -> Option<(Emotion, Vec<f32>)> {
        let cleaned: Vec<f32> = self.0.iter().map(|&v| if v <= 1 { 0.0 } else { v as f32 }).collect();
        let total: f32 = cleaned.iter().sum();
        if total <= 0.0 {
            return None;
        }
        let (best, &max) = cleaned.iter().enumerate().fold((0, &-1.0f32), |a, b| if b.1 > a.1 { b } else { a });
        if best >= 8 {
            return None;
        }
        let label = Emotion::ALL[best];
        match mode {
            FerPlusMode::Majority => {
                if max <= 0.5 * total {
                    return None;
                }
                let mut one_hot = vec![0.0; 8];
                one_hot[best] = 1.0;
                Some((label, one_hot))
            }
            FerPlusMode::Soft => {
                let emotions: f32 = cleaned[..8].iter().sum();
                // Mostly "unknown" / "not a face": not an expression to learn from.
                if emotions <= 0.5 * total {
                    return None;
                }
                Some((label, cleaned[..8].iter().map(|v| v / emotions).collect()))
            }
        }
    }
}

/// Parses `fer2013new.csv`: one entry per FER2013 row, `None` where FERPlus has no image for it.
pub fn parse_votes(path: &Path, text: &str) -> Result<Vec<Option<Votes>>, DatasetError> {
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, l)| l.trim().to_ascii_lowercase()).unwrap_or_default();
    if !header.starts_with("usage,image name,neutral,happiness") {
        return Err(DatasetError::BadLabelFile {
            path: path.to_path_buf(),
            reason: "expected FERPlus's fer2013new.csv (header `Usage,Image name,neutral,happiness,...`)".into(),
        });
    }
    let mut rows = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| DatasetError::BadLine { path: path.to_path_buf(), line: i + 1, reason };
        let cols: Vec<&str> = line.split(',').collect();
        if cols.len() != 12 {
            return Err(bad(format!("{} columns instead of 12", cols.len())));
        }
        let mut votes = [0u8; 10];
        for (v, c) in votes.iter_mut().zip(&cols[2..]) {
            *v = c.trim().parse().map_err(|_| bad(format!("vote count {c:?} is not a number 0–255")))?;
        }
        rows.push((!cols[1].trim().is_empty()).then_some(Votes(votes)));
    }
    Ok(rows)
}

/// Parses `fer2013_row_alignment.csv` into image path (relative to the FER2013 folder) → row.
/// Images whose row is unknown are left out.
pub fn parse_alignment(path: &Path, text: &str) -> Result<BTreeMap<String, usize>, DatasetError> {
    let mut lines = text.lines().enumerate();
    let header: Vec<String> =
        lines.next().map(|(_, l)| l.split(',').map(|c| c.trim().to_ascii_lowercase()).collect()).unwrap_or_default();
    let col = |name: &str| {
        header.iter().position(|c| c == name).ok_or_else(|| DatasetError::BadLabelFile {
            path: path.to_path_buf(),
            reason: format!("no `{name}` column: expected the row-alignment CSV (path,usage,label,fer2013_row,...)"),
        })
    };
    let (path_col, row_col) = (col("path")?, col("fer2013_row")?);
    let mut map = BTreeMap::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split(',').collect();
        let (Some(p), Some(r)) = (cols.get(path_col), cols.get(row_col)) else {
            return Err(DatasetError::BadLine {
                path: path.to_path_buf(),
                line: i + 1,
                reason: format!("{} columns, fewer than the header's", cols.len()),
            });
        };
        if r.trim().is_empty() {
            continue;
        }
        let row = r.trim().parse().map_err(|_| DatasetError::BadLine {
            path: path.to_path_buf(),
            line: i + 1,
            reason: format!("fer2013_row {r:?} is not a row number"),
        })?;
        map.insert(p.trim().to_string(), row);
    }
    Ok(map)
}

/// What [`apply_ferplus`] did, for the user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FerPlusSummary {
    pub relabelled: usize,
    /// Images whose label differs from FER2013's.
    pub changed: usize,
    /// Images without a FERPlus row (unknown alignment or no FERPlus image).
    pub unmatched: usize,
    /// Images FERPlus's votes reject (no majority, mostly unknown or not a face).
    pub rejected: usize,
}

impl std::fmt::Display for FerPlusSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FERPlus labels: {} images relabelled ({} differ from FER2013's label); dropped {} without a FERPlus row and {} that the votes reject",
            self.relabelled, self.changed, self.unmatched, self.rejected
        )
    }
}

fn read_text(path: &Path) -> Result<String, DatasetError> {
    if !path.exists() {
        return Err(DatasetError::Missing(path.to_path_buf()));
    }
    let bytes = std::fs::read(path).map_err(|source| DatasetError::Io { path: path.to_path_buf(), source })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Replaces the labels of a FER2013 dataset with FERPlus's (`ferplus_dir` holds `fer2013new.csv`)
/// and drops the images FERPlus cannot label.
pub fn apply_ferplus(
    dataset: &mut Dataset,
    ferplus_dir: &Path,
    mode: FerPlusMode,
) -> Result<FerPlusSummary, DatasetError> {
    let votes_path = ferplus_dir.join("fer2013new.csv");
    let votes = parse_votes(&votes_path, &read_text(&votes_path)?)?;
    type RowOf = Box<dyn Fn(&str) -> Option<usize>>;
    let row_of: RowOf = match dataset.layout {
        Layout::Fer2013Csv => Box::new(|id: &str| id.strip_prefix("row:").and_then(|r| r.parse().ok())),
        Layout::Fer2013Folders => {
            let alignment_path: PathBuf = dataset.root.join("fer2013_row_alignment.csv");
            let map = parse_alignment(&alignment_path, &read_text(&alignment_path)?)?;
            Box::new(move |id: &str| map.get(id).copied())
        }
        other => {
            return Err(DatasetError::BadLabelFile {
                path: dataset.root.clone(),
                reason: format!("FERPlus labels describe FER2013 only; this dataset is {other}"),
            })
        }
    };
    let mut summary = FerPlusSummary::default();
    dataset.samples.retain_mut(|s| {
        let Some(v) = row_of(&s.id).and_then(|r| votes.get(r).copied().flatten()) else {
            summary.unmatched += 1;
            return false;
        };
        let Some((label, target)) = v.target(mode) else {
            summary.rejected += 1;
            return false;
        };
        summary.relabelled += 1;
        summary.changed += usize::from(label != s.label);
        s.label = label;
        s.votes = (mode == FerPlusMode::Soft).then_some(target);
        true
    });
    dataset.notes.push(summary.to_string());
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_votes_are_noise_and_majority_needs_more_than_half() {
        // 4 neutral, 3 sadness, 1 anger (noise), 2 disgust.
        let v = Votes([4, 0, 0, 3, 1, 2, 0, 0, 0, 0]);
        assert_eq!(v.target(FerPlusMode::Majority), None, "4 of 9 is no majority");
        let (label, soft) = v.target(FerPlusMode::Soft).unwrap();
        assert_eq!(label, Emotion::Neutral);
        assert_eq!(soft, vec![4.0 / 9.0, 0.0, 0.0, 3.0 / 9.0, 0.0, 2.0 / 9.0, 0.0, 0.0]);
        let v = Votes([0, 6, 1, 0, 0, 0, 0, 0, 3, 0]);
        assert_eq!(v.target(FerPlusMode::Majority).unwrap().0, Emotion::Happiness);
        // Mostly "not a face".
        assert_eq!(Votes([0, 0, 0, 0, 0, 0, 0, 0, 0, 10]).target(FerPlusMode::Soft), None);
        assert_eq!(Votes([2, 0, 0, 0, 0, 0, 0, 0, 3, 5]).target(FerPlusMode::Soft), None);
        assert_eq!(Votes([0; 10]).target(FerPlusMode::Majority), None);
    }

    #[test]
    fn votes_file_rows_and_errors() {
        let p = Path::new("fer2013new.csv");
        let text = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n\
                    Training,fer0000000.png,4,0,0,1,3,2,0,0,0,0\nPrivateTest,,0,0,0,0,0,0,0,0,0,10\n";
        let rows = parse_votes(p, text).unwrap();
        assert_eq!(rows, vec![Some(Votes([4, 0, 0, 1, 3, 2, 0, 0, 0, 0])), None]);
        let err = parse_votes(p, "Usage,Image name,neutral,happiness\nTraining,a.png,x,0,0,0,0,0,0,0,0,0\n");
        assert!(err.unwrap_err().to_string().contains("line 2"));
        assert!(parse_votes(p, "emotion,pixels\n").is_err());
    }

    #[test]
    fn alignment_by_column_name() {
        let p = Path::new("fer2013_row_alignment.csv");
        let text = "path,usage,label,fer2013_row,ferplus_image\ntrain/angry/a.jpg,Training,angry,7,fer7.png\n\
                    test/happy/b.jpg,PublicTest,happy,,\n";
        let m = parse_alignment(p, text).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m["train/angry/a.jpg"], 7);
        assert!(parse_alignment(p, "file,row\n").unwrap_err().to_string().contains("path"));
    }
}
