//! Dataset readers for the layouts people actually have, behind one [`Dataset`] type with
//! subject ids, mapped onto mien's one label set ([`Emotion`]).
//!
//! Recognised layouts (see [`open`]):
//! - CK+ official: `cohn-kanade-images/S005/001/S005_001_00000011.png` and
//!   `Emotion/S005/001/S005_001_00000011_emotion.txt` (the last frame of a labelled sequence is
//!   the peak; the first frame of every sequence is neutral);
//! - class folders: `<root>/<emotion>/<file>` (CK+48, CK+ apex/neutral), the subject id taken
//!   from an `S###_` file-name prefix;
//! - FER2013 as the original CSV (`emotion,pixels,Usage`);
//! - FER2013 as Kaggle's folders (`train/<class>/`, `test/<class>/`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mien::Emotion;

/// Which layout a folder or file was recognised as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    CkPlusOfficial,
    ClassFolders,
    Fer2013Csv,
    Fer2013Folders,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::CkPlusOfficial => "CK+ official layout (cohn-kanade-images/ + Emotion/)",
            Layout::ClassFolders => "class folders (<emotion>/<image>)",
            Layout::Fer2013Csv => "FER2013 CSV (emotion,pixels,Usage)",
            Layout::Fer2013Folders => "FER2013 folders (train/<class>, test/<class>)",
        })
    }
}

/// Where a sample's pixels are.
#[derive(Debug, Clone, PartialEq)]
pub enum Pixels {
    /// An image file (decoded, and face-cropped if it is a full frame, when used).
    File(PathBuf),
    /// A 48×48 gray face crop held in memory (FER2013 CSV rows).
    Gray48(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// A stable id: the path relative to the dataset root, or `row:<n>` for CSV rows.
    pub id: String,
    pub pixels: Pixels,
    pub label: Emotion,
    /// The subject (person) the image shows, where the dataset says (CK+'s `S###`).
    pub subject: Option<String>,
    /// The dataset's own split (`Training`, `PublicTest`, `PrivateTest`), where it has one.
    pub usage: Option<String>,
    /// Soft label: the share of annotators who chose each emotion, in [`Emotion::ALL`] order
    /// (FERPlus votes, see [`apply_ferplus`]); `None` where the dataset has one label per image.
    pub votes: Option<Vec<f32>>,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    pub layout: Layout,
    pub samples: Vec<Sample>,
    /// Things worth telling the user (unlabelled sequences, skipped rows), already phrased.
    pub notes: Vec<String>,
    /// Ids of byte-identical images, one group per image that occurs more than once.
    pub duplicates: Vec<Vec<String>>,
}

impl Dataset {
    /// Sample counts per label, in canonical order.
    pub fn counts(&self) -> BTreeMap<Emotion, usize> {
        let mut c = BTreeMap::new();
        for s in &self.samples {
            *c.entry(s.label).or_insert(0) += 1;
        }
        c
    }

    /// Test-split images (PublicTest, PrivateTest) with an identical copy outside the test splits:
    /// a model trained on those copies has seen these test images.
    pub fn test_images_seen_in_training(&self) -> std::collections::BTreeSet<String> {
        self.copies_across_splits(true)
    }

    /// Images outside the test splits that are identical to a test-split image; training leaves
    /// them out so that no test image is learnt.
    pub fn training_copies_of_test_images(&self) -> std::collections::BTreeSet<String> {
        self.copies_across_splits(false)
    }

    fn copies_across_splits(&self, want_test: bool) -> std::collections::BTreeSet<String> {
        let usage: BTreeMap<&str, bool> = self
            .samples
            .iter()
            .map(|s| (s.id.as_str(), matches!(s.usage.as_deref(), Some("PublicTest") | Some("PrivateTest"))))
            .collect();
        let mut out = std::collections::BTreeSet::new();
        for g in &self.duplicates {
            let test: Vec<bool> = g.iter().map(|id| usage.get(id.as_str()).copied().unwrap_or(false)).collect();
            if test.contains(&true) && test.contains(&false) {
                out.extend(g.iter().zip(&test).filter(|(_, &t)| t == want_test).map(|(id, _)| id.clone()));
            }
        }
        out
    }

    /// The labels that occur, in canonical order.
    pub fn labels(&self) -> Vec<Emotion> {
        self.counts().keys().copied().collect()
    }
}

/// Why a dataset could not be read. Each message says what is wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{0}: no such file or folder")]
    Missing(PathBuf),
    #[error("{path}: matches no known dataset layout; expected one of: class folders named after emotions (happy/, sad/, ...), a CK+ tree with cohn-kanade-images/ and Emotion/, a FER2013 CSV (emotion,pixels,Usage), or FER2013 train/ and test/ folders")]
    UnknownLayout { path: PathBuf },
    #[error("{path}: folder `{name}` is not an emotion mien knows (known: {known}); rename or remove it")]
    UnknownClass { path: PathBuf, name: String, known: String },
    #[error("{path}: line {line}: {reason}")]
    BadLine { path: PathBuf, line: usize, reason: String },
    #[error("{path}: {reason}")]
    BadLabelFile { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: no images found")]
    Empty { path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io { path: path.to_path_buf(), source }
}

const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "gif", "webp", "bmp", "tif", "tiff"];

fn is_image(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).map_err(io(dir))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    v.sort();
    Ok(v)
}

/// The `S###` subject id at the start of a CK+ file name.
pub fn ckplus_subject(file_name: &str) -> Option<String> {
    let b = file_name.as_bytes();
    (b.len() >= 5 && b[0] == b'S' && b[1..4].iter().all(u8::is_ascii_digit) && b[4] == b'_')
        .then(|| file_name[..4].to_string())
}

/// Reads any supported dataset at `path`, recognising its layout.
pub fn open(path: &Path) -> Result<Dataset, DatasetError> {
    if !path.exists() {
        return Err(DatasetError::Missing(path.to_path_buf()));
    }
    let dataset = if path.is_file() {
        read_fer2013_csv(path)?
    } else if path.join("cohn-kanade-images").is_dir() && path.join("Emotion").is_dir() {
        read_ckplus_official(path)?
    } else if path.join("train").is_dir() && path.join("test").is_dir() {
        let mut train = read_class_folders(&path.join("train"))?;
        let test = read_class_folders(&path.join("test"))?;
        for s in train.samples.iter_mut() {
            s.usage = Some("Training".into());
            s.id = format!("train/{}", s.id);
        }
        for mut s in test.samples {
            let name = s.id.rsplit('/').next().unwrap_or("");
            s.usage = Some(if name.starts_with("PrivateTest") { "PrivateTest" } else { "PublicTest" }.into());
            s.id = format!("test/{}", s.id);
            train.samples.push(s);
        }
        Dataset { root: path.to_path_buf(), layout: Layout::Fer2013Folders, ..train }
    } else {
        read_class_folders(path)?
    };
    if dataset.samples.is_empty() {
        return Err(DatasetError::Empty { path: path.to_path_buf() });
    }
    let mut dataset = dataset;
    let groups = duplicate_groups(&dataset);
    if let Some(note) = describe_duplicates(&dataset, &groups) {
        dataset.notes.push(note);
    }
    dataset.duplicates = groups.iter().map(|g| g.iter().map(|&i| dataset.samples[i].id.clone()).collect()).collect();
    Ok(dataset)
}

/// Groups of samples with byte-identical images (file bytes, or a CSV row's pixels), each group
/// sorted, groups in order of their first sample. Unreadable files are left to the reader that
/// uses them (skipped and counted there).
pub fn duplicate_groups(dataset: &Dataset) -> Vec<Vec<usize>> {
    use std::hash::{Hash, Hasher};
    let mut by_hash: BTreeMap<(u64, usize), Vec<usize>> = BTreeMap::new();
    let mut contents: Vec<Option<Vec<u8>>> = Vec::with_capacity(dataset.samples.len());
    for (i, s) in dataset.samples.iter().enumerate() {
        let bytes = match &s.pixels {
            Pixels::File(p) => std::fs::read(p).ok(),
            Pixels::Gray48(px) => Some(px.clone()),
        };
        if let Some(b) = &bytes {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            b.hash(&mut h);
            by_hash.entry((h.finish(), b.len())).or_default().push(i);
        }
        contents.push(bytes);
    }
    let mut groups = Vec::new();
    for candidates in by_hash.into_values().filter(|v| v.len() > 1) {
        // Same hash and length: split by the actual bytes.
        let mut rest = candidates;
        while let Some(first) = rest.first().copied() {
            let (same, other): (Vec<usize>, Vec<usize>) =
                rest.into_iter().partition(|&j| contents[j] == contents[first]);
            if same.len() > 1 {
                groups.push(same);
            }
            rest = other;
        }
    }
    groups.sort();
    groups
}

/// A note on duplicates, or `None` without any. Copies that disagree on the label, or that sit in
/// both a training and a test split, are named: the first is label noise, the second inflates
/// test accuracy.
pub fn describe_duplicates(dataset: &Dataset, groups: &[Vec<usize>]) -> Option<String> {
    if groups.is_empty() {
        return None;
    }
    let files: usize = groups.iter().map(Vec::len).sum();
    let s = &dataset.samples;
    let conflicting: Vec<&Vec<usize>> =
        groups.iter().filter(|g| g.iter().any(|&i| s[i].label != s[g[0]].label)).collect();
    let is_test = |i: usize| matches!(s[i].usage.as_deref(), Some("PublicTest") | Some("PrivateTest"));
    let across: Vec<&Vec<usize>> =
        groups.iter().filter(|g| g.iter().any(|&i| is_test(i)) && g.iter().any(|&i| !is_test(i))).collect();
    let name = |g: &Vec<usize>| {
        let mut v: Vec<String> = g.iter().take(3).map(|&i| format!("{} ({})", s[i].id, s[i].label)).collect();
        if g.len() > 3 {
            v.push(format!("{} more", g.len() - 3));
        }
        v.join(" = ")
    };
    let mut note = format!("{} groups of identical images ({files} files)", groups.len());
    if !conflicting.is_empty() {
        note += &format!(
            "; {} with different labels: {}",
            conflicting.len(),
            conflicting.iter().take(3).map(|g| name(g)).collect::<Vec<_>>().join("; ")
        );
    }
    if !across.is_empty() {
        note += &format!(
            "; {} in both a training and a test split: {}",
            across.len(),
            across.iter().take(3).map(|g| name(g)).collect::<Vec<_>>().join("; ")
        );
    }
    Some(note)
}

fn read_class_folders(root: &Path) -> Result<Dataset, DatasetError> {
    let dirs: Vec<PathBuf> = sorted_entries(root)?.into_iter().filter(|p| p.is_dir()).collect();
    if dirs.is_empty() {
        return Err(DatasetError::UnknownLayout { path: root.to_path_buf() });
    }
    let mut samples = Vec::new();
    let mut known_any = false;
    for dir in &dirs {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        if name.starts_with('.') {
            continue;
        }
        let Some(label) = Emotion::from_name(&name) else {
            if !known_any
                && dirs.iter().all(|d| Emotion::from_name(&d.file_name().unwrap().to_string_lossy()).is_none())
            {
                return Err(DatasetError::UnknownLayout { path: root.to_path_buf() });
            }
            return Err(DatasetError::UnknownClass {
                path: root.to_path_buf(),
                name,
                known: Emotion::ALL.iter().map(|e| e.name()).collect::<Vec<_>>().join(", "),
            });
        };
        known_any = true;
        for file in sorted_entries(dir)? {
            if !file.is_file() || !is_image(&file) {
                continue;
            }
            let file_name = file.file_name().unwrap().to_string_lossy().to_string();
            samples.push(Sample {
                id: format!("{name}/{file_name}"),
                subject: ckplus_subject(&file_name),
                pixels: Pixels::File(file),
                label,
                usage: None,
                votes: None,
            });
        }
    }
    Ok(Dataset {
        root: root.to_path_buf(),
        layout: Layout::ClassFolders,
        samples,
        notes: Vec::new(),
        duplicates: Vec::new(),
    })
}

/// Parses a CK+ `*_emotion.txt` (one number such as `   5.0000000e+00`).
pub fn parse_ckplus_emotion(path: &Path, text: &str) -> Result<Emotion, DatasetError> {
    let bad = |reason: String| DatasetError::BadLabelFile { path: path.to_path_buf(), reason };
    let value: f64 = text.trim().parse().map_err(|_| bad(format!("expected one number, found {:?}", text.trim())))?;
    if value.fract() != 0.0 || !(0.0..=7.0).contains(&value) {
        return Err(bad(format!("emotion code {value} is not one of 0–7")));
    }
    Emotion::from_ckplus_code(value as u8).ok_or_else(|| bad(format!("emotion code {value} is not one of 0–7")))
}

fn read_ckplus_official(root: &Path) -> Result<Dataset, DatasetError> {
    let images = root.join("cohn-kanade-images");
    let emotions = root.join("Emotion");
    let mut samples = Vec::new();
    let mut unlabelled = Vec::new();
    for subject_dir in sorted_entries(&images)?.into_iter().filter(|p| p.is_dir()) {
        let subject = subject_dir.file_name().unwrap().to_string_lossy().to_string();
        for seq_dir in sorted_entries(&subject_dir)?.into_iter().filter(|p| p.is_dir()) {
            let seq = seq_dir.file_name().unwrap().to_string_lossy().to_string();
            let frames: Vec<PathBuf> = sorted_entries(&seq_dir)?.into_iter().filter(|p| is_image(p)).collect();
            let (Some(first), Some(last)) = (frames.first(), frames.last()) else { continue };
            let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).to_string_lossy().replace('\\', "/");
            samples.push(Sample {
                id: rel(first),
                pixels: Pixels::File(first.clone()),
                label: Emotion::Neutral,
                subject: Some(subject.clone()),
                usage: None,
                votes: None,
            });
            let label_dir = emotions.join(&subject).join(&seq);
            let label_file = if label_dir.is_dir() {
                sorted_entries(&label_dir)?.into_iter().find(|p| p.to_string_lossy().ends_with("_emotion.txt"))
            } else {
                None
            };
            match label_file {
                Some(file) => {
                    let text = std::fs::read_to_string(&file).map_err(io(&file))?;
                    let label = parse_ckplus_emotion(&file, &text)?;
                    if frames.len() > 1 {
                        samples.push(Sample {
                            id: rel(last),
                            pixels: Pixels::File(last.clone()),
                            label,
                            subject: Some(subject.clone()),
                            usage: None,
                            votes: None,
                        });
                    }
                }
                None => unlabelled.push(format!("{subject}/{seq}")),
            }
        }
    }
    let mut notes = Vec::new();
    if !unlabelled.is_empty() {
        notes.push(format!(
            "{} sequences have no emotion label (their first frame is used as neutral): {}",
            unlabelled.len(),
            unlabelled.join(", ")
        ));
    }
    Ok(Dataset { root: root.to_path_buf(), layout: Layout::CkPlusOfficial, samples, notes, duplicates: Vec::new() })
}

fn read_fer2013_csv(path: &Path) -> Result<Dataset, DatasetError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    parse_fer2013_csv(path, &String::from_utf8_lossy(&bytes))
}

/// Parses the text of a FER2013 CSV (`emotion,pixels,Usage`) read from `path` (named in
/// messages). Malformed rows are skipped and counted in the notes, never fatal.
pub fn parse_fer2013_csv(path: &Path, text: &str) -> Result<Dataset, DatasetError> {
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, l)| l.trim().to_ascii_lowercase()).unwrap_or_default();
    if !header.starts_with("emotion,pixels") {
        return Err(DatasetError::UnknownLayout { path: path.to_path_buf() });
    }
    let mut samples = Vec::new();
    let mut skipped = Vec::new();
    for (i, line) in lines {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let mut cols = line.split(',');
        let parsed = (|| -> Result<Sample, String> {
            let code: u8 =
                cols.next().unwrap_or("").trim().parse().map_err(|_| "emotion is not a number 0–6".to_string())?;
            let label =
                Emotion::from_fer2013_code(code).ok_or_else(|| format!("emotion code {code} is not one of 0–6"))?;
            let pixels: Result<Vec<u8>, _> =
                cols.next().unwrap_or("").split_whitespace().map(str::parse::<u8>).collect();
            let pixels = pixels.map_err(|_| "pixels are not numbers 0–255".to_string())?;
            if pixels.len() != 48 * 48 {
                return Err(format!("{} pixels instead of 2304 (48×48)", pixels.len()));
            }
            let usage = cols.next().map(|u| u.trim().to_string()).filter(|u| !u.is_empty());
            Ok(Sample {
                id: format!("row:{}", line_no - 1),
                pixels: Pixels::Gray48(pixels),
                label,
                subject: None,
                usage,
                votes: None,
            })
        })();
        match parsed {
            Ok(s) => samples.push(s),
            Err(reason) => skipped.push(format!("line {line_no}: {reason}")),
        }
    }
    let mut notes = Vec::new();
    if !skipped.is_empty() {
        notes.push(format!(
            "{} malformed rows skipped: {}",
            skipped.len(),
            skipped.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
        ));
    }
    Ok(Dataset { root: path.to_path_buf(), layout: Layout::Fer2013Csv, samples, notes, duplicates: Vec::new() })
}

/// Applies a labels-override CSV (`id,label` lines, ids as in [`Sample::id`]) and describes what
/// changed. Unknown ids and labels are errors naming the line.
pub fn apply_overrides(dataset: &mut Dataset, csv: &Path) -> Result<Vec<String>, DatasetError> {
    let bytes = std::fs::read(csv).map_err(io(csv))?;
    let overrides = parse_overrides(csv, &String::from_utf8_lossy(&bytes))?;
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for (i, s) in dataset.samples.iter().enumerate() {
        index.insert(s.id.clone(), i);
    }
    let mut changes = Vec::new();
    for (line, id, label) in overrides {
        let &k = index.get(&id).ok_or_else(|| DatasetError::BadLine {
            path: csv.to_path_buf(),
            line,
            reason: format!("no sample with id {id:?} in the dataset"),
        })?;
        let s = &mut dataset.samples[k];
        if s.label != label {
            changes.push(format!("{}: {} → {}", s.id, s.label, label));
            s.label = label;
        }
    }
    Ok(changes)
}

/// Parses a labels-override CSV into `(line number, sample id, label)`; a header line `id,...` is
/// allowed. A malformed line or an unknown label is an error naming the line.
pub fn parse_overrides(path: &Path, text: &str) -> Result<Vec<(usize, String, Emotion)>, DatasetError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.to_ascii_lowercase().starts_with("id,")) {
            continue;
        }
        let bad = |reason: String| DatasetError::BadLine { path: path.to_path_buf(), line: i + 1, reason };
        let (id, label) = line.split_once(',').ok_or_else(|| bad("expected `id,label`".into()))?;
        let label = Emotion::from_name(label).ok_or_else(|| bad(format!("unknown label {label:?}")))?;
        out.push((i + 1, id.trim().to_string(), label));
    }
    Ok(out)
}
