//! The dashboard's other report cards: learning curves, CK+ cross-validation, the crop check and
//! the model card.

use std::rc::Rc;

use serde_json::Value;
use yew::prelude::*;

use super::report::{missing, pct, report_of, Loaded, ReportView};

pub fn learning_curves(manifest: &Loaded) -> Html {
    let title = "Learning curves of the shipped model";
    if let Some(h) = missing("curves", title, manifest) {
        return h;
    }
    let Some(Ok(m)) = manifest else { return html! {} };
    // A fine-tuned model also carries the epochs of the model it started from (`init_history`):
    // drawn first, with a line where fine-tuning began.
    let earlier = m["info"]["init_history"].as_array().cloned().unwrap_or_default();
    let own = m["info"]["history"].as_array().cloned().unwrap_or_default();
    if own.is_empty() {
        return html! {};
    }
    let history: Vec<Value> = earlier.iter().chain(&own).cloned().collect();
    let series = |key: &str| -> Vec<f64> { history.iter().map(|e| e[key].as_f64().unwrap_or(f64::NAN)).collect() };
    let (train_acc, val_acc, loss) = (series("train_accuracy"), series("val_accuracy"), series("train_loss"));
    let n = history.len();
    let (w, h, pad) = (560.0, 220.0, 32.0);
    let x = |i: usize| pad + (w - 2.0 * pad) * i as f64 / (n.max(2) - 1) as f64;
    let line = |v: &[f64], lo: f64, hi: f64| -> String {
        v.iter()
            .enumerate()
            .filter(|(_, y)| y.is_finite())
            .map(|(i, y)| {
                format!(
                    "{:.1},{:.1}",
                    x(i),
                    h - pad - (h - 2.0 * pad) * ((y - lo) / (hi - lo).max(1e-9)).clamp(0.0, 1.0)
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let max_loss = loss.iter().copied().filter(|v| v.is_finite()).fold(0.0, f64::max);
    html! {
        <section class="card" id="curves" data-epochs={n.to_string()} data-earlier={earlier.len().to_string()}>
            <h2>{ title }</h2>
            <svg class="curves" viewBox={format!("0 0 {w} {h}")} role="img" aria-label="Accuracy and loss per epoch">
                <line x1={pad.to_string()} y1={(h - pad).to_string()} x2={(w - pad).to_string()} y2={(h - pad).to_string()} class="axis" />
                <line x1={pad.to_string()} y1={pad.to_string()} x2={pad.to_string()} y2={(h - pad).to_string()} class="axis" />
                <polyline class="train" points={line(&train_acc, 0.0, 1.0)} />
                <polyline class="val" points={line(&val_acc, 0.0, 1.0)} />
                <polyline class="loss" points={line(&loss, 0.0, max_loss)} />
                if !earlier.is_empty() {
                    <line class="boundary" x1={format!("{:.1}", x(earlier.len() - 1))} y1={pad.to_string()}
                        x2={format!("{:.1}", x(earlier.len() - 1))} y2={(h - pad).to_string()} />
                    <text class="boundary" x={format!("{:.1}", x(earlier.len() - 1) - 4.0)} y={(pad + 12.0).to_string()} text-anchor="end">
                        { format!("fine-tuning from epoch {}", earlier.len()) }
                    </text>
                }
                <text x={pad.to_string()} y="20">{ "accuracy 0–100% (loss scaled)" }</text>
                <text x={(w - pad).to_string()} y={(h - 8.0).to_string()} text-anchor="end">{ format!("epoch 1–{n}") }</text>
            </svg>
            <p class="legend"><span class="train">{ "train accuracy" }</span><span class="val">{ "validation accuracy" }</span><span class="loss">{ "train loss" }</span></p>
        </section>
    }
}

pub fn cv_section(cv: &Loaded) -> Html {
    let title = "CK+48 subject-independent cross-validation";
    if let Some(h) = missing("cv", title, cv) {
        return h;
    }
    let Some(Ok(v)) = cv else { return html! {} };
    let folds = v["folds"].as_array().cloned().unwrap_or_default();
    let pooled = report_of(v).ok();
    html! {
        <section class="card" id="cv" data-mean={format!("{:.6}", v["accuracy_mean"].as_f64().unwrap_or(f64::NAN))}
            data-std={format!("{:.6}", v["accuracy_std"].as_f64().unwrap_or(f64::NAN))}>
            <h2>{ title }</h2>
            <p class="note">{ format!("{} folds grouped by subject ({} subjects): no person is in both the training and the test part of a fold. Pooled matrix over all folds below.",
                folds.len(), v["meta"]["subjects"].as_u64().unwrap_or(0)) }</p>
            <p>{ format!("Accuracy {} ± {} (mean ± std over folds)", pct(v["accuracy_mean"].as_f64().unwrap_or(0.0)), pct(v["accuracy_std"].as_f64().unwrap_or(0.0))) }</p>
            { match v["meta"]["train_config"]["init"].as_str() {
                Some(init) => html! { <p class="note">{ format!("Each fold starts from the layers of the model in {init} (trained on FER2013 only, no CK+ image) with a fresh head, and fine-tunes on that fold's training subjects.") }</p> },
                None => html! { <p class="note">{ "Each fold trains from random weights." }</p> },
            } }
            <table class="folds">
                <thead><tr><th>{ "fold" }</th><th>{ "accuracy" }</th><th>{ "macro-F1" }</th><th>{ "test images" }</th><th>{ "best epoch" }</th></tr></thead>
                <tbody>
                    { for folds.iter().enumerate().map(|(i, f)| html! {
                        <tr class="fold" data-accuracy={format!("{:.6}", f["accuracy"].as_f64().unwrap_or(f64::NAN))}>
                            <th>{ (i + 1).to_string() }</th>
                            <td>{ pct(f["accuracy"].as_f64().unwrap_or(0.0)) }</td>
                            <td>{ format!("{:.3}", f["macro_f1"].as_f64().unwrap_or(0.0)) }</td>
                            <td>{ f["meta"]["test_images"].to_string() }</td>
                            <td>{ f["meta"]["best_epoch"].to_string() }</td>
                        </tr>
                    }) }
                </tbody>
            </table>
            { match pooled { Some(r) => html! { <ReportView report={Rc::new(r)} /> }, None => html! {} } }
        </section>
    }
}

pub fn crop_section(crop: &Loaded) -> Html {
    let title = "What people get: faces found, cropped and classified by the app";
    if let Some(h) = missing("crop", title, crop) {
        return h;
    }
    let Some(Ok(v)) = crop else { return html! {} };
    let r = &v["result"];
    let found = |r: &Value| r["detected"].as_f64().unwrap_or(0.0) / r["images"].as_f64().unwrap_or(1.0);
    let bare = &v["bare"];
    let bare_rows = if bare.is_object() {
        html! {
            <>
                <tr><th>{ "face found in the image as it is (no frame around it)" }</th><td>{ pct(found(bare)) }</td></tr>
                <tr><th>{ "accuracy, the image as it is through the pipeline" }</th>
                    <td id="crop-bare" data-found={ format!("{:.6}", found(bare)) } data-accuracy={ format!("{:.6}", bare["pipeline_accuracy"].as_f64().unwrap_or(0.0)) }>{ pct(bare["pipeline_accuracy"].as_f64().unwrap_or(0.0)) }</td></tr>
            </>
        }
    } else {
        html! {}
    };
    html! {
        <section class="card" id="crop">
            <h2>{ title }</h2>
            <p class="note">{ "Held-out dataset images go through the page's own pipeline (MTCNN finds the face, the crop is cut, the classifier answers; a face not found counts as wrong), pasted into larger frames and as they are, beside the accuracy of the dataset crops fed to the classifier directly." }</p>
            <table>
                <tbody>
                    <tr><th>{ "images" }</th><td>{ r["images"].to_string() }</td></tr>
                    <tr><th>{ "accuracy, dataset crop" }</th><td>{ pct(r["direct_accuracy"].as_f64().unwrap_or(0.0)) }</td></tr>
                    <tr><th>{ "face found in a larger frame" }</th><td>{ pct(found(r)) }</td></tr>
                    <tr><th>{ "accuracy, larger frame through the pipeline" }</th><td id="crop-pipeline" data-found={ format!("{:.6}", found(r)) } data-accuracy={ format!("{:.6}", r["pipeline_accuracy"].as_f64().unwrap_or(0.0)) }>{ pct(r["pipeline_accuracy"].as_f64().unwrap_or(0.0)) }</td></tr>
                    { bare_rows }
                    <tr><th>{ "same prediction both ways" }</th><td>{ pct(r["agreement"].as_f64().unwrap_or(0.0)) }</td></tr>
                    <tr><th>{ "crop (tuned on training images)" }</th><td>{ format!("margin {:.2}, shift {:.2}, {}", r["margin"].as_f64().unwrap_or(0.0), r["shift"].as_f64().unwrap_or(0.0),
                        if r["align"].as_bool() == Some(true) { "eyes levelled" } else { "not rotated" }) }</td></tr>
                </tbody>
            </table>
            { photo_check(&v["photos"]) }
        </section>
    }
}

/// The fixture photos' faces moved into larger frames (`crop-check --photos`), where the report
/// has them: no labels there, so the reference is each face's crop from the photo as it is.
fn photo_check(p: &Value) -> Html {
    let (Some(agreement), Some(framings)) = (p["agreement"].as_f64(), p["framings"].as_u64()) else {
        return html! {};
    };
    let scales: Vec<String> =
        p["scales"].as_array().map(|s| s.iter().map(|v| v.to_string()).collect()).unwrap_or_default();
    html! {
        <>
            <p class="note">{ format!("Photos: each face of the fixture photos, the photo scaled by {} and moved into a larger frame, against its crop from the photo as it is.", scales.join(", ")) }</p>
            <table id="crop-photos" data-agreement={ format!("{agreement:.6}") }>
                <tbody>
                    <tr><th>{ "faces (photos)" }</th><td>{ format!("{} ({})", p["faces"], p["photos"]) }</td></tr>
                    <tr><th>{ "found again" }</th><td>{ format!("{} of {framings} framings", p["found_again"]) }</td></tr>
                    <tr><th>{ "same top emotion" }</th><td>{ pct(agreement) }</td></tr>
                    <tr><th>{ "crop likeness (mean NCC)" }</th><td>{ format!("{:.3}", p["mean_ncc"].as_f64().unwrap_or(0.0)) }</td></tr>
                </tbody>
            </table>
        </>
    }
}

pub fn model_card(manifest: &Loaded, shipped: &Loaded) -> Html {
    let title = "Model card";
    if let Some(h) = missing("model-card", title, manifest) {
        return h;
    }
    let Some(Ok(m)) = manifest else { return html! {} };
    let info = &m["info"];
    let labels: Vec<String> = m["labels"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|l| l.as_str().map(String::from))
        .collect();
    let support: Vec<(String, u64)> = shipped
        .as_ref()
        .and_then(|r| r.as_ref().ok())
        .map(|r| labels.iter().map(|l| (l.clone(), r["per_class"][l]["support"].as_u64().unwrap_or(0))).collect())
        .unwrap_or_default();
    let train_counts = info["train_counts"].as_object().cloned().unwrap_or_default();
    let row = |k: &str, v: String| html! { <tr><th>{ k.to_string() }</th><td>{ v }</td></tr> };
    html! {
        <section class="card" id="model-card">
            <h2>{ title }</h2>
            <table>
                <tbody>
                    { row("task", format!("facial expression of an aligned gray face crop → {} emotions", labels.len())) }
                    { row("labels", labels.join(", ")) }
                    { row("input", format!("{0}×{0} gray, (pixel/255 − {1}) / {2}; crop margin {3:.2}, shift {4:.2}, {5}{6}", m["input_size"], m["mean"], m["std"],
                        m["crop"]["margin"].as_f64().unwrap_or(0.0), m["crop"]["shift"].as_f64().unwrap_or(0.0),
                        if m["crop"]["align"].as_bool() == Some(true) { "eyes levelled" } else { "not rotated" },
                        if m["flip_average"].as_bool() == Some(true) { "; prediction averaged with the mirror image" } else { "" })) }
                    { row("network", info["architecture"].as_str().unwrap_or("ExpressionNet").to_string()) }
                    { row("size", info["weights_bytes"].as_u64().map(|b| format!("{:.2} MB of weights ({} parameters)", b as f64 / 1e6, info["parameters"])).unwrap_or_else(|| "—".into())) }
                    { row("training data", info["training_data"].as_str().unwrap_or("—").to_string()) }
                    { row("licences", info["licences"].as_str().unwrap_or("—").to_string()) }
                    { row("reproduce", info["reproduce"].as_str().unwrap_or("—").to_string()) }
                    { row("known weaknesses", info["weaknesses"].as_str().unwrap_or("—").to_string()) }
                </tbody>
            </table>
            <h3>{ "Dataset composition" }</h3>
            <table class="composition">
                <thead><tr><th>{ "label" }</th><th>{ "training images" }</th><th>{ "PublicTest images" }</th></tr></thead>
                <tbody>
                    { for labels.iter().map(|l| html! {
                        <tr><th>{ l.clone() }</th>
                            <td>{ train_counts.get(l).map(|v| v.to_string()).unwrap_or_else(|| "—".into()) }</td>
                            <td>{ support.iter().find(|(k, _)| k == l).map(|(_, s)| s.to_string()).unwrap_or_else(|| "—".into()) }</td></tr>
                    }) }
                </tbody>
            </table>
        </section>
    }
}
