//! Knowledge distillation (`train --teacher DIR`): a student learns from a trained teacher's
//! softened predictions, and a teacher that does not fit the run is refused by name.

use std::path::Path;
use std::process::Command;

mod common;
use common::{dataset, TempDir};

fn trainer(args: &[&str], data: &Path, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mien-trainer"))
        // Layout 1: on this tiny dataset six epochs leave layout 2's deeper stack of batch norms
        // with running statistics that still put its validation at chance (its training accuracy
        // is 1.0), and this test is about distillation, not layouts.
        .args(["--device", "cpu", "train", "--batch-size", "8", "--patience", "0", "--augment", "0", "--seed", "5"])
        .args(["--layout", "1"])
        .args(args)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn history(model: &Path) -> Vec<serde_json::Value> {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(model.join("manifest.json")).unwrap()).unwrap();
    m["info"]["history"].as_array().unwrap().clone()
}

#[test]
fn a_student_learns_the_classes_from_the_teacher_alone() {
    let tmp = TempDir::new("distill");
    let data = tmp.0.join("data");
    dataset(&data);
    let teacher = tmp.0.join("teacher");
    let out = trainer(&["--epochs", "6", "--width", "0.5"], &data, &teacher);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let taught = history(&teacher);
    let teacher_val = taught.last().unwrap()["val_accuracy"].as_f64().unwrap();
    assert!(teacher_val > 0.9, "the teacher must know the classes first: {taught:?}");

    // Distillation only (weight 1): the labels never enter the loss, so whatever the student
    // learns about them comes through the teacher's probabilities. The teacher is taken from a
    // copy of its folder, as the shipped model is taken from `assets/model`.
    let student = tmp.0.join("student");
    let shipped = tmp.0.join("shipped");
    std::fs::create_dir_all(&shipped).unwrap();
    for file in ["classifier.safetensors", "manifest.json"] {
        std::fs::copy(teacher.join(file), shipped.join(file)).unwrap();
    }
    let teacher_arg = shipped.display().to_string();
    let args =
        ["--epochs", "10", "--width", "0.5", "--dropout", "0", "--teacher", &teacher_arg, "--distill-weight", "1"];
    let out = trainer(&args, &data, &student);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let learnt = history(&student);
    println!("teacher: {taught:?}\nstudent: {learnt:?}");
    let (first, last) = (&learnt[0], learnt.last().unwrap());
    // Its loss is KL(teacher ‖ student): it falls as the student comes to agree with the teacher.
    let kl = |h: &serde_json::Value| h["train_loss"].as_f64().unwrap();
    assert!(kl(last) < 0.3 * kl(first), "{learnt:?}");
    // And agreeing with the teacher means knowing the classes (chance is 1/3).
    assert!(last["train_accuracy"].as_f64().unwrap() > 0.9, "{learnt:?}");
    assert!(last["val_accuracy"].as_f64().unwrap() > 0.6, "{learnt:?}");
    // The run says how to reproduce it, teacher included.
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(student.join("manifest.json")).unwrap()).unwrap();
    let reproduce = m["info"]["reproduce"].as_str().unwrap_or_default();
    // It names the teacher where the teacher's own commands write it, not the copy it was given:
    // a copy in `assets/model` is replaced by the student once the student ships.
    let made = teacher.display().to_string();
    assert!(reproduce.contains(&format!("--teacher {made} --distill-weight 1")), "{reproduce}");
    assert!(!reproduce.contains(&teacher_arg), "{reproduce}");
    // How the teacher was made comes first: without it the student cannot be made again.
    let t: serde_json::Value = serde_json::from_slice(&std::fs::read(teacher.join("manifest.json")).unwrap()).unwrap();
    let teacher_steps = t["info"]["reproduce"].as_str().unwrap();
    assert!(teacher_steps.contains(" train ") && !teacher_steps.contains("--teacher"), "{teacher_steps}");
    assert!(reproduce.starts_with(&format!("{teacher_steps} && ")), "{reproduce}");

    // A teacher with other outputs than the run's labels is refused, naming it.
    let wrong = tmp.0.join("wrong-teacher");
    std::fs::create_dir_all(&wrong).unwrap();
    std::fs::copy(teacher.join("classifier.safetensors"), wrong.join("classifier.safetensors")).unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(teacher.join("manifest.json")).unwrap()).unwrap();
    manifest["labels"].as_array_mut().unwrap().pop();
    std::fs::write(wrong.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    let wrong_arg = wrong.display().to_string();
    let out = trainer(&["--epochs", "1", "--teacher", &wrong_arg], &data, &tmp.0.join("refused"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("the teacher {wrong_arg} has 2 labels, this run 3")), "{err}");
}
