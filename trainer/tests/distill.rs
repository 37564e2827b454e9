//! Knowledge distillation (`train --teacher DIR`): a student learns from a trained teacher's
//! softened predictions (or from several teachers' mean), and a teacher that does not fit the run
//! is refused by name.

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

/// `evaluate --validation` of the mean of `models`: its exit status, stderr and report.
fn validate(models: &[&Path], data: &Path, report: &Path) -> (bool, String, serde_json::Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mien-trainer"));
    cmd.args(["--device", "cpu", "evaluate", "--validation", "--data"]).arg(data).arg("--report").arg(report);
    for m in models {
        cmd.arg("--model").arg(m);
    }
    let out = cmd.output().unwrap();
    let r = std::fs::read(report).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let _ = std::fs::remove_file(report);
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned(), r)
}

/// A copy of the model folder `from` at `to`, its manifest changed by `edit`.
fn copy_model(from: &Path, to: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(from.join("classifier.safetensors"), to.join("classifier.safetensors")).unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(from.join("manifest.json")).unwrap()).unwrap();
    edit(&mut manifest);
    std::fs::write(to.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
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

    // A teacher that does not fit the run is refused before training starts, naming it.
    let refused = |name: &str, edit: &dyn Fn(&mut serde_json::Value), expected: &dyn Fn(&str) -> String| {
        let model = tmp.0.join(name);
        copy_model(&teacher, &model, edit);
        let arg = model.display().to_string();
        let out = trainer(&["--epochs", "1", "--teacher", &arg], &data, &tmp.0.join("refused"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} was accepted");
        assert!(err.contains(&expected(&arg)), "{err}");
    };
    // One with other outputs than the run's labels.
    refused(
        "wrong-teacher",
        &|m| {
            m["labels"].as_array_mut().unwrap().pop();
        },
        &|arg| format!("the teacher {arg} has 2 labels, this run 3"),
    );
    // One with the same labels in another order: its probabilities would teach wrong classes.
    refused("reordered-teacher", &|m| m["labels"].as_array_mut().unwrap().reverse(), &|arg| {
        format!("the teacher {arg} has the labels")
    });
    // And one that held out another split (seed): it trained on some of this run's validation
    // images, which would then flatter the student.
    refused("leaky-teacher", &|m| m["info"]["train_config"]["seed"] = 6.into(), &|_| {
        "trained with the split of seed 6, this run holds out the split of seed 5".to_string()
    });
}

#[test]
fn several_teachers_teach_their_mean_and_are_scored_together() {
    let tmp = TempDir::new("distill-ensemble");
    let data = tmp.0.join("data");
    dataset(&data);
    // Two teachers of different widths; the second learns from the first, so the two chains
    // share the first's training, which the student's reproduce line must run once only.
    let (first, second) = (tmp.0.join("first"), tmp.0.join("second"));
    let out = trainer(&["--epochs", "6", "--width", "0.5"], &data, &first);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let first_arg = first.display().to_string();
    let out = trainer(&["--epochs", "6", "--width", "0.75", "--teacher", &first_arg], &data, &second);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let second_arg = second.display().to_string();

    // The ensemble is scored on the split all three runs held out.
    let report = tmp.0.join("validation.json");
    let (ok, err, alone) = validate(&[&first], &data, &report);
    assert!(ok, "{err}");
    let (ok, err, both) = validate(&[&first, &second], &data, &report);
    assert!(ok, "{err}");
    assert_eq!(both["meta"]["model"].as_str().unwrap(), format!("{first_arg} + {second_arg}"));
    assert_eq!(both["meta"]["kind"], "validation");
    assert!(both["accuracy"].as_f64().unwrap() > 0.6, "{both}");
    // The mean of a model with itself is the model: the averaging keeps every answer.
    let (ok, err, twice) = validate(&[&first, &first], &data, &report);
    assert!(ok, "{err}");
    assert_eq!(twice["confusion_matrix"], alone["confusion_matrix"], "{twice}\n{alone}");
    // A model that held out another split trained on some of the images: refused.
    let other_split = tmp.0.join("other-split");
    copy_model(&first, &other_split, |m| m["info"]["train_config"]["seed"] = 6.into());
    let (ok, err, _) = validate(&[&first, &other_split], &data, &report);
    assert!(!ok && err.contains("held out another validation split (seed 6)"), "{err}");
    // An ensemble is a candidate, not a model the app loads: no test-split score for it.
    let out = Command::new(env!("CARGO_BIN_EXE_mien-trainer"))
        .args(["--device", "cpu", "evaluate", "--model", &first_arg, "--model", &second_arg, "--data"])
        .arg(&data)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("scored on validation only (add --validation)"), "{err}");

    let student = tmp.0.join("student");
    let args = [
        "--epochs",
        "10",
        "--width",
        "0.5",
        "--dropout",
        "0",
        "--teacher",
        &first_arg,
        "--teacher",
        &second_arg,
        "--distill-weight",
        "1",
    ];
    let out = trainer(&args, &data, &student);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let learnt = history(&student);
    let (start, last) = (&learnt[0], learnt.last().unwrap());
    // The KL divergence from the teachers' mean falls, and the mean knows the classes.
    let kl = |h: &serde_json::Value| h["train_loss"].as_f64().unwrap();
    assert!(kl(last) < 0.5 * kl(start), "{learnt:?}");
    assert!(last["val_accuracy"].as_f64().unwrap() > 0.6, "{learnt:?}");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(student.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["info"]["train_config"]["distill"]["teachers"], serde_json::json!([first_arg, second_arg]));
    let reproduce = m["info"]["reproduce"].as_str().unwrap();
    assert!(reproduce.contains(&format!("--teacher {first_arg} --teacher {second_arg} --distill-weight 1")));
    // The first teacher is trained once, before the second, which learns from it.
    let steps: Vec<&str> = reproduce.split(" && ").collect();
    assert_eq!(steps.len(), 3, "{reproduce}");
    assert!(steps[0].contains(&format!("--out {first_arg}")) && !steps[0].contains("--teacher"), "{reproduce}");
    assert!(steps[1].contains(&format!("--out {second_arg}")), "{reproduce}");
}
