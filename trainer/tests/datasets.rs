//! Dataset readers on the real layouts: CK+ official (a small tree in that exact layout, built
//! from fixture photos), CK+48 and FER2013 from ../shared, FER2013 CSV, and bad input.

use std::path::{Path, PathBuf};

use mien::Emotion;
use mien_trainer::datasets::{apply_overrides, open, DatasetError, Layout};

fn repo() -> PathBuf {
    mien_trainer::repo_root()
}

/// A dataset from the research-only data beside the repository (`../shared/data`, or `$MIEN_DATA`).
fn shared(rel: &str) -> PathBuf {
    let base = std::env::var_os("MIEN_DATA").map(PathBuf::from).unwrap_or_else(|| repo().join("../shared/data"));
    let path = base.join(rel);
    assert!(
        path.exists(),
        "{} is missing: the datasets are expected in ../shared/data beside the repository (or set MIEN_DATA)",
        path.display()
    );
    path
}

struct Tmp(PathBuf);
impl Tmp {
    fn new(tag: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("mien-ds-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
}
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn put(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A CK+ tree: S005/001 labelled happy (3 frames), S010/002 unlabelled (2 frames).
fn ckplus_tree(root: &Path, label_text: &str) {
    let face = std::fs::read(repo().join("tests/fixtures/faces/luciano_codait.png")).unwrap();
    let face2 = std::fs::read(repo().join("tests/fixtures/faces/grace_hopper.jpg")).unwrap();
    for f in 1..=3 {
        put(&root.join(format!("cohn-kanade-images/S005/001/S005_001_{f:08}.png")), &face);
    }
    put(&root.join("Emotion/S005/001/S005_001_00000003_emotion.txt"), label_text.as_bytes());
    for f in 1..=2 {
        put(&root.join(format!("cohn-kanade-images/S010/002/S010_002_{f:08}.png")), &face2);
    }
}

#[test]
fn ckplus_official_layout_neutral_first_frames_and_peak_labels() {
    let t = Tmp::new("ck");
    ckplus_tree(&t.0, "   5.0000000e+00\n");
    let d = open(&t.0).unwrap();
    assert_eq!(d.layout, Layout::CkPlusOfficial);
    let got: Vec<(String, Emotion, Option<String>)> =
        d.samples.iter().map(|s| (s.id.clone(), s.label, s.subject.clone())).collect();
    assert_eq!(
        got,
        vec![
            ("cohn-kanade-images/S005/001/S005_001_00000001.png".into(), Emotion::Neutral, Some("S005".into())),
            ("cohn-kanade-images/S005/001/S005_001_00000003.png".into(), Emotion::Happiness, Some("S005".into())),
            ("cohn-kanade-images/S010/002/S010_002_00000001.png".into(), Emotion::Neutral, Some("S010".into())),
        ]
    );
    assert!(d.notes.iter().any(|n| n.contains("S010/002")), "{:?}", d.notes);
}

#[test]
fn ckplus_malformed_label_file_names_the_file() {
    let t = Tmp::new("ckbad");
    ckplus_tree(&t.0, "happy\n");
    match open(&t.0) {
        Err(e @ DatasetError::BadLabelFile { .. }) => {
            assert!(e.to_string().contains("S005_001_00000003_emotion.txt"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ckplus48_class_folders() {
    let d = open(&shared("ckplus/CK+48")).unwrap();
    assert_eq!(d.layout, Layout::ClassFolders);
    assert_eq!(d.samples.len(), 981);
    let counts = d.counts();
    assert_eq!(counts[&Emotion::Happiness], 207);
    assert_eq!(counts[&Emotion::Surprise], 249);
    assert_eq!(counts[&Emotion::Contempt], 54);
    assert!(!counts.contains_key(&Emotion::Neutral));
    let subjects: std::collections::BTreeSet<_> = d.samples.iter().map(|s| s.subject.clone().unwrap()).collect();
    assert_eq!(subjects.len(), 118);
}

#[test]
fn ckplus_apex_neutral_has_eight_classes() {
    let d = open(&shared("ckplus/CK+_apex_neutral_48")).unwrap();
    assert_eq!(d.samples.len(), 890);
    assert_eq!(d.labels().len(), 8);
    assert_eq!(d.counts()[&Emotion::Neutral], 575);
}

#[test]
fn fer2013_folders_keep_the_official_split() {
    let d = open(&shared("fer2013")).unwrap();
    assert_eq!(d.layout, Layout::Fer2013Folders);
    let n = |u: &str| d.samples.iter().filter(|s| s.usage.as_deref() == Some(u)).count();
    assert_eq!((n("Training"), n("PublicTest"), n("PrivateTest")), (28709, 3589, 0));
    assert_eq!(d.counts()[&Emotion::Disgust], 436 + 56);
}

#[test]
fn fer2013_csv_rows_and_malformed_rows() {
    let t = Tmp::new("csv");
    let px = |v: u8| vec![v.to_string(); 2304].join(" ");
    let csv = format!(
        "emotion,pixels,Usage\n3,{},Training\n6,{},PublicTest\n9,{},Training\n0,1 2 3,Training\n0,{},PrivateTest\n",
        px(10),
        px(20),
        px(30),
        px(40)
    );
    let path = t.0.join("fer2013.csv");
    put(&path, csv.as_bytes());
    let d = open(&path).unwrap();
    assert_eq!(d.layout, Layout::Fer2013Csv);
    let labels: Vec<Emotion> = d.samples.iter().map(|s| s.label).collect();
    assert_eq!(labels, vec![Emotion::Happiness, Emotion::Neutral, Emotion::Anger]);
    assert_eq!(d.samples[1].usage.as_deref(), Some("PublicTest"));
    assert!(
        d.notes[0].contains("2 malformed rows") && d.notes[0].contains("line 4") && d.notes[0].contains("line 5"),
        "{:?}",
        d.notes
    );
}

#[test]
fn unknown_class_and_unknown_layout_are_explained() {
    let t = Tmp::new("bad");
    put(&t.0.join("happy/a.png"), b"x");
    put(&t.0.join("bored/b.png"), b"x");
    let e = open(&t.0).unwrap_err();
    assert!(matches!(e, DatasetError::UnknownClass { ref name, .. } if name == "bored"), "{e}");
    let t2 = Tmp::new("none");
    put(&t2.0.join("holiday/a.png"), b"x");
    assert!(matches!(open(&t2.0).unwrap_err(), DatasetError::UnknownLayout { .. }));
    assert!(matches!(open(&t2.0.join("nope")).unwrap_err(), DatasetError::Missing(_)));
}

#[test]
fn label_overrides_are_merged_and_reported() {
    let t = Tmp::new("ovr");
    ckplus_tree(&t.0, "   5.0000000e+00\n");
    let mut d = open(&t.0).unwrap();
    let csv = t.0.join("overrides.csv");
    put(&csv, b"id,label\ncohn-kanade-images/S005/001/S005_001_00000003.png,surprise\n");
    let changes = apply_overrides(&mut d, &csv).unwrap();
    assert_eq!(changes, vec!["cohn-kanade-images/S005/001/S005_001_00000003.png: happiness → surprise".to_string()]);
    assert_eq!(d.samples[1].label, Emotion::Surprise);
    put(&csv, b"nope.png,happy\n");
    assert!(matches!(apply_overrides(&mut d, &csv), Err(DatasetError::BadLine { line: 1, .. })));
}

#[test]
fn ferplus_votes_replace_fer2013_labels_through_the_row_alignment() {
    use mien_trainer::ferplus::{apply_ferplus, FerPlusMode};
    for mode in [FerPlusMode::Soft, FerPlusMode::Majority] {
        let mut d = open(&shared("fer2013")).unwrap();
        let total = d.samples.len();
        let summary = apply_ferplus(&mut d, &shared("ferplus"), mode).unwrap();
        // 151 Training + 10 PublicTest images have no FERPlus row (PROVENANCE.md).
        assert_eq!(summary.unmatched, 161, "{summary}");
        assert_eq!(summary.relabelled + summary.rejected + summary.unmatched, total);
        assert_eq!(d.samples.len(), summary.relabelled);
        // Row 31937 of fer2013new.csv: 8 neutral, 1 sadness, 1 anger; single votes are noise, so
        // FERPlus says plainly neutral where FER2013's folder says angry.
        let s = d.samples.iter().find(|s| s.id == "test/angry/PublicTest_10116449.jpg").unwrap();
        assert_eq!(s.label, Emotion::Neutral);
        match mode {
            FerPlusMode::Soft => assert_eq!(s.votes.as_deref(), Some(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0][..])),
            FerPlusMode::Majority => assert_eq!(s.votes, None),
        }
        // FERPlus's relabelling agrees with FER2013 on most images, not all (PROVENANCE: 62%).
        let agree = 1.0 - summary.changed as f64 / summary.relabelled as f64;
        assert!((0.55..0.80).contains(&agree), "{agree} {summary}");
        assert!(d.labels().contains(&Emotion::Contempt));
    }
    // Not FER2013: refused with a reason.
    let mut ck = open(&shared("ckplus/CK+48")).unwrap();
    let e = apply_ferplus(&mut ck, &shared("ferplus"), FerPlusMode::Soft).unwrap_err();
    assert!(e.to_string().contains("FER2013 only"), "{e}");
}

#[test]
fn duplicate_files_are_found_and_conflicts_named() {
    let t = Tmp::new("dup");
    let a = std::fs::read(repo().join("tests/fixtures/faces/luciano_codait.png")).unwrap();
    let b = std::fs::read(repo().join("tests/fixtures/faces/grace_hopper.jpg")).unwrap();
    let c = std::fs::read(repo().join("tests/fixtures/faces/bryan_codait_tiny.png")).unwrap();
    put(&t.0.join("happy/S001_a.png"), &a);
    put(&t.0.join("sadness/S002_a_copy.png"), &a); // same image, other label
    put(&t.0.join("happy/S003_b.jpg"), &b);
    put(&t.0.join("happy/S003_b_again.jpg"), &b); // same image, same label
    put(&t.0.join("happy/S004_c.png"), &c);
    let d = open(&t.0).unwrap();
    // Every file is still there: duplicates are reported, not silently dropped.
    assert_eq!(d.samples.len(), 5);
    let groups = mien_trainer::datasets::duplicate_groups(&d);
    let ids = |g: &Vec<usize>| g.iter().map(|&i| d.samples[i].id.clone()).collect::<Vec<_>>();
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert_eq!(ids(&groups[0]), ["happy/S001_a.png", "sadness/S002_a_copy.png"]);
    assert_eq!(ids(&groups[1]), ["happy/S003_b.jpg", "happy/S003_b_again.jpg"]);
    let note = d.notes.iter().find(|n| n.contains("identical")).expect("a note on duplicates");
    assert!(note.starts_with("2 groups of identical images (4 files); 1 with different labels"), "{note}");
    assert!(note.contains("happy/S001_a.png (happiness) = sadness/S002_a_copy.png (sadness)"), "{note}");
}

#[test]
fn missing_label_files_are_named_and_nothing_is_half_applied() {
    use mien_trainer::ferplus::{apply_ferplus, FerPlusMode};
    let t = Tmp::new("missing-labels");
    ckplus_tree(&t.0, "   5.0000000e+00\n");
    let mut d = open(&t.0).unwrap();
    let before = d.samples.clone();
    // A labels-override file that is not there.
    let e = apply_overrides(&mut d, &t.0.join("no-such-overrides.csv")).unwrap_err();
    assert!(matches!(e, DatasetError::Io { .. }) && e.to_string().contains("no-such-overrides.csv"), "{e}");
    // A CK+ label file removed: its sequence is kept as unlabelled (first frame neutral) and said so.
    std::fs::remove_file(t.0.join("Emotion/S005/001/S005_001_00000003_emotion.txt")).unwrap();
    let d2 = open(&t.0).unwrap();
    assert!(d2.samples.iter().all(|s| s.label == Emotion::Neutral));
    assert!(d2.notes.iter().any(|n| n.contains("S005/001")), "{:?}", d2.notes);
    // FERPlus files missing: the error names the file, the dataset keeps FER2013's labels.
    let mut fer = mien_trainer::datasets::parse_fer2013_csv(
        Path::new("fer.csv"),
        &format!("emotion,pixels,Usage\n3,{},Training\n", vec!["7"; 2304].join(" ")),
    )
    .unwrap();
    let e = apply_ferplus(&mut fer, &t.0.join("no-ferplus"), FerPlusMode::Soft).unwrap_err();
    assert!(matches!(e, DatasetError::Missing(ref p) if p.ends_with("fer2013new.csv")), "{e}");
    assert_eq!(fer.samples.len(), 1);
    assert_eq!(fer.samples[0].label, Emotion::Happiness);
    // A malformed votes file: named with its line, nothing applied.
    put(&t.0.join("ferplus/fer2013new.csv"), b"Usage,Image name,neutral,happiness\nTraining,a.png,1,2\n");
    let e = apply_ferplus(&mut fer, &t.0.join("ferplus"), FerPlusMode::Soft).unwrap_err();
    assert!(e.to_string().contains("fer2013new.csv: line 2"), "{e}");
    assert_eq!(fer.samples[0].votes, None);
    assert_eq!(d.samples, before);
}
