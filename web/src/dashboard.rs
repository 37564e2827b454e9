//! The dashboard: how good the shipped model is, rendered from the trainer's JSON reports (the
//! same files `mien-trainer` writes; nothing here is computed from hard-coded numbers), and an
//! evaluation of the visitor's own labelled photos, computed in the page.

use std::rc::Rc;

use js_sys::ArrayBuffer;
use mien::metrics::{ConfusionMatrix, Report};
use mien::Emotion;
use serde_json::Value;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{File, HtmlInputElement, Response};
use yew::prelude::*;

use crate::app::EngineContext;
use crate::bridge::Reply;

/// The report files the dashboard reads (written by the commands in the README).
pub const SHIPPED_REPORT: &str = "./reports/fer2013_publictest.json";
pub const CKPLUS_SHIPPED_REPORT: &str = "./reports/ckplus_shipped.json";
pub const CV_REPORT: &str = "./reports/ckplus_cv.json";
pub const CROP_REPORT: &str = "./reports/crop_check.json";
pub const MANIFEST: &str = "./assets/model/manifest.json";

/// A fetched JSON file, or why it is not there.
type Loaded = Option<Result<Value, String>>;

async fn fetch_json(url: &str) -> Result<Value, String> {
    let window = web_sys::window().ok_or("no window")?;
    let resp = JsFuture::from(window.fetch_with_str(url)).await.map_err(|e| format!("{url}: {e:?}"))?;
    let resp: Response = resp.unchecked_into();
    if !resp.ok() {
        return Err(format!("{url} is not deployed (HTTP {})", resp.status()));
    }
    let text = JsFuture::from(resp.text().map_err(|e| format!("{e:?}"))?).await.map_err(|e| format!("{e:?}"))?;
    serde_json::from_str(&text.as_string().unwrap_or_default()).map_err(|e| format!("{url} is not valid JSON: {e}"))
}

#[hook]
fn use_json(url: &'static str) -> UseStateHandle<Loaded> {
    let state = use_state(|| None);
    {
        let state = state.clone();
        use_effect_with(url, move |url| {
            let url = *url;
            wasm_bindgen_futures::spawn_local(async move { state.set(Some(fetch_json(url).await)) });
            || ()
        });
    }
    state
}

fn report_of(v: &Value) -> Result<Report, String> {
    Report::from_value(v).map_err(|e| e.to_string())
}

/// The same evaluation without the test images that have a byte-identical copy in training
/// (FER2013 has 280 such PublicTest images), where the report has it.
fn without_training_copies(v: &Value) -> Html {
    let w = &v["meta"]["without_training_copies"];
    match (w["accuracy"].as_f64(), w["images"].as_u64(), w["images_left_out"].as_u64()) {
        (Some(acc), Some(n), Some(out)) => html! {
            <p class="note without-copies" data-accuracy={format!("{acc:.6}")}>
                { format!("Without the {out} test images that also appear, byte for byte, in the training split: accuracy {} on {n} images.", pct(acc)) }
            </p>
        },
        _ => html! {},
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

#[function_component(Dashboard)]
pub fn dashboard() -> Html {
    let shipped = use_json(SHIPPED_REPORT);
    let ck_shipped = use_json(CKPLUS_SHIPPED_REPORT);
    let cv = use_json(CV_REPORT);
    let crop = use_json(CROP_REPORT);
    let manifest = use_json(MANIFEST);

    let ok = |l: &Loaded| l.as_ref().and_then(|r| r.as_ref().ok()).cloned();
    let headline = |id: &str, title: &str, value: Option<String>, sub: String| {
        html! {
            <div class="metric" id={id.to_string()} data-value={value.clone().unwrap_or_default()}>
                <span class="big">{ value.unwrap_or_else(|| "—".into()) }</span>
                <span class="what">{ title.to_string() }</span>
                <span class="sub">{ sub }</span>
            </div>
        }
    };
    let cv_v = ok(&cv);
    let shipped_v = ok(&shipped);
    let ck_v = ok(&ck_shipped);
    let cv_head = cv_v
        .as_ref()
        .and_then(|v| Some(format!("{} ± {}", pct(v["accuracy_mean"].as_f64()?), pct(v["accuracy_std"].as_f64()?))));
    let cv_sub = cv_v
        .as_ref()
        .map(|v| {
            format!(
                "{} subject-independent folds, CK+48 (7 classes)",
                v["folds"].as_array().map(|f| f.len()).unwrap_or(0)
            )
        })
        .unwrap_or_default();

    html! {
        <div class="dashboard">
            <section class="card">
                <h2>{ "How good is it?" }</h2>
                <div class="metrics">
                    { headline("head-cv", "CK+ cross-validation", cv_head, cv_sub) }
                    { headline("head-fer", "FER2013 PublicTest (shipped model)", shipped_v.as_ref().and_then(|v| v["accuracy"].as_f64()).map(pct),
                        shipped_v.as_ref().map(|v| format!("{} images, macro-F1 {:.3}", total(v), v["macro_f1"].as_f64().unwrap_or(0.0))).unwrap_or_default()) }
                    { headline("head-ck-shipped", "CK+ (shipped model, never trained on CK+)", ck_v.as_ref().and_then(|v| v["accuracy"].as_f64()).map(pct),
                        ck_v.as_ref().map(|v| format!("{} images, cross-dataset", total(v))).unwrap_or_default()) }
                    <div class="metric study" id="head-study">
                        <span class="big">{ "21% · 48% · 68%" }</span>
                        <span class="what">{ "the original study on CK+" }</span>
                        <span class="sub">{ "68% with MTCNN face crops, 48% without; one hold-out split with subjects in both train and test" }</span>
                    </div>
                </div>
            </section>
            { report_section("shipped", "Shipped model on FER2013 PublicTest", &shipped,
                "Never used for training or model selection (validation was a seeded 10% of FER2013 train).") }
            { learning_curves(&manifest) }
            { cv_section(&cv) }
            { report_section("ck-shipped", "Shipped model on CK+48", &ck_shipped,
                "All CK+48 images of the model's labels (contempt is not among them); no CK+ subject was seen in training, so every subject is held out.") }
            { crop_section(&crop) }
            { model_card(&manifest, &shipped) }
            <OwnPhotos />
        </div>
    }
}

fn total(v: &Value) -> u64 {
    v["confusion_matrix"]
        .as_array()
        .map(|r| r.iter().flat_map(|r| r.as_array().cloned().unwrap_or_default()).filter_map(|c| c.as_u64()).sum())
        .unwrap_or(0)
}

fn missing(id: &str, title: &str, l: &Loaded) -> Option<Html> {
    match l {
        None => Some(
            html! { <section class="card" id={id.to_string()}><h2>{ title.to_string() }</h2><p class="note">{ "Loading…" }</p></section> },
        ),
        Some(Err(e)) => Some(html! {
            <section class="card" id={id.to_string()} data-state="missing"><h2>{ title.to_string() }</h2>
                <p class="note">{ format!("Not available: {e}. The README says which command writes it.") }</p></section>
        }),
        Some(Ok(_)) => None,
    }
}

fn report_section(id: &str, title: &str, l: &Loaded, how: &str) -> Html {
    if let Some(h) = missing(id, title, l) {
        return h;
    }
    let Some(Ok(v)) = l else { return html! {} };
    match report_of(v) {
        Ok(r) => html! {
            <section class="card" id={id.to_string()} data-accuracy={format!("{:.6}", r.accuracy)} data-macro-f1={format!("{:.6}", r.macro_f1)}>
                <h2>{ title.to_string() }</h2>
                <p class="note">{ how.to_string() }</p>
                <p>{ format!("Accuracy {} · macro-F1 {:.3} · {} images", pct(r.accuracy), r.macro_f1, total(v)) }</p>
                { without_training_copies(v) }
                <ReportView report={Rc::new(r)} />
            </section>
        },
        Err(e) => {
            html! { <section class="card" id={id.to_string()}><h2>{ title.to_string() }</h2><p class="error">{ e }</p></section> }
        }
    }
}

#[derive(Properties, PartialEq)]
pub struct ReportProps {
    pub report: Rc<Report>,
}

/// Confusion-matrix heat map (counts or row-normalised) and the per-class table.
#[function_component(ReportView)]
pub fn report_view(props: &ReportProps) -> Html {
    let normalised = use_state(|| false);
    let r = &props.report;
    let toggle = {
        let normalised = normalised.clone();
        Callback::from(move |_| normalised.set(!*normalised))
    };
    html! {
        <div class="report">
            <div class="matrix-wrap">
                <button type="button" class="small" onclick={toggle}>
                    { if *normalised { "Show counts" } else { "Show row-normalised" } }
                </button>
                { confusion_table(&r.labels, &r.confusion_matrix, *normalised) }
            </div>
            <table class="per-class">
                <thead><tr><th>{ "label" }</th><th>{ "precision" }</th><th>{ "recall" }</th><th>{ "F1" }</th><th>{ "support" }</th></tr></thead>
                <tbody>
                    { for r.labels.iter().filter_map(|l| r.per_class.get(l).map(|c| (l, c))).map(|(l, c)| html! {
                        <tr data-label={l.clone()}>
                            <th>{ l.clone() }</th>
                            <td>{ format!("{:.3}", c.precision) }</td><td>{ format!("{:.3}", c.recall) }</td>
                            <td>{ format!("{:.3}", c.f1) }</td><td>{ c.support.to_string() }</td>
                        </tr>
                    }) }
                </tbody>
            </table>
        </div>
    }
}

/// Rows = true label, columns = predicted; cell shade = row share.
pub fn confusion_table(labels: &[String], counts: &[Vec<u64>], normalised: bool) -> Html {
    html! {
        <table class="confusion" aria-label="Confusion matrix: rows are true labels, columns predicted labels">
            <thead><tr><th>{ "true \\ predicted" }</th>{ for labels.iter().map(|l| html! { <th>{ short(l) }</th> }) }</tr></thead>
            <tbody>
                { for labels.iter().zip(counts).map(|(l, row)| {
                    let sum: u64 = row.iter().sum();
                    html! {
                        <tr>
                            <th>{ l.clone() }</th>
                            { for row.iter().map(|&c| {
                                let share = if sum == 0 { 0.0 } else { c as f64 / sum as f64 };
                                let text = if normalised { format!("{:.0}%", 100.0 * share) } else { c.to_string() };
                                let style = format!("background: rgba(47,111,237,{:.3}); color: {}", share, if share > 0.55 { "#fff" } else { "inherit" });
                                html! { <td class="cell" data-count={c.to_string()} style={style}>{ text }</td> }
                            }) }
                        </tr>
                    }
                }) }
            </tbody>
        </table>
    }
}

fn short(l: &str) -> String {
    l.chars().take(5).collect()
}

fn learning_curves(manifest: &Loaded) -> Html {
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

fn cv_section(cv: &Loaded) -> Html {
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

fn crop_section(crop: &Loaded) -> Html {
    let title = "Does the browser's crop match the training crops?";
    if let Some(h) = missing("crop", title, crop) {
        return h;
    }
    let Some(Ok(v)) = crop else { return html! {} };
    let r = &v["result"];
    html! {
        <section class="card" id="crop">
            <h2>{ title }</h2>
            <p class="note">{ "Held-out dataset crops, upscaled and pasted into larger frames, go through the page's own pipeline (MTCNN, aligned crop, classifier) and are compared with the crops fed directly." }</p>
            <table>
                <tbody>
                    <tr><th>{ "images" }</th><td>{ r["images"].to_string() }</td></tr>
                    <tr><th>{ "face found" }</th><td>{ pct(r["detected"].as_f64().unwrap_or(0.0) / r["images"].as_f64().unwrap_or(1.0)) }</td></tr>
                    <tr><th>{ "accuracy, dataset crop" }</th><td>{ pct(r["direct_accuracy"].as_f64().unwrap_or(0.0)) }</td></tr>
                    <tr><th>{ "accuracy, full frame through the pipeline" }</th><td id="crop-pipeline">{ pct(r["pipeline_accuracy"].as_f64().unwrap_or(0.0)) }</td></tr>
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

fn model_card(manifest: &Loaded, shipped: &Loaded) -> Html {
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

/// The label of a photo from its folder or file name (`happy/001.jpg`, `anger_03.png`, ...).
pub fn label_from_path(path: &str) -> Option<Emotion> {
    let lower = path.to_lowercase();
    let parts: Vec<&str> = lower.split(['/', '\\']).collect();
    // The nearest folder wins; then the words of the file name.
    for part in parts.iter().rev().skip(1) {
        if let Some(e) = Emotion::from_name(part) {
            return Some(e);
        }
    }
    let file = parts.last()?;
    let stem = file.rsplit_once('.').map(|(s, _)| s).unwrap_or(file);
    stem.split(|c: char| !c.is_alphabetic()).find_map(Emotion::from_name)
}

#[derive(Clone, PartialEq, Default)]
struct OwnEval {
    running: usize,
    matrix: Option<ConfusionMatrix>,
    /// Photos left out, and why.
    skipped: Vec<String>,
}

/// Evaluate your own labelled photos: each photo's largest face is classified in the worker and
/// scored against the label in its folder or file name. Nothing is uploaded.
#[function_component(OwnPhotos)]
fn own_photos() -> Html {
    let ctx = use_context::<EngineContext>().expect("inside the app shell");
    let eval = use_state(OwnEval::default);
    let acc = use_mut_ref(OwnEval::default);
    let on_files = {
        let ctx = ctx.clone();
        let eval = eval.clone();
        let acc = acc.clone();
        Callback::from(move |e: Event| {
            let input: HtmlInputElement = e.target_unchecked_into();
            let Some(list) = input.files() else { return };
            let files: Vec<File> = (0..list.length()).filter_map(|i| list.get(i)).collect();
            input.set_value("");
            *acc.borrow_mut() = OwnEval { running: files.len(), matrix: None, skipped: Vec::new() };
            eval.set(acc.borrow().clone());
            for file in files {
                let path = js_sys::Reflect::get(&file, &"webkitRelativePath".into())
                    .ok()
                    .and_then(|p| p.as_string())
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| file.name());
                let label = label_from_path(&path);
                let (eval, acc, worker) = (eval.clone(), acc.clone(), ctx.worker.clone());
                wasm_bindgen_futures::spawn_local(async move {
                    let finish = move |outcome: Result<(Emotion, Vec<Emotion>, Vec<f32>), String>| {
                        let mut a = acc.borrow_mut();
                        a.running = a.running.saturating_sub(1);
                        match outcome {
                            Ok((truth, labels, probs)) => {
                                let names: Vec<String> = labels.iter().map(|l| l.name().to_string()).collect();
                                let m = a.matrix.get_or_insert_with(|| ConfusionMatrix::new(names));
                                match labels.iter().position(|l| *l == truth) {
                                    Some(t) => {
                                        m.add(t, crate::photos::argmax(&probs));
                                    }
                                    None => a.skipped.push(format!("{path}: the model has no label {}", truth.name())),
                                }
                            }
                            Err(e) => a.skipped.push(format!("{path}: {e}")),
                        }
                        eval.set(a.clone());
                    };
                    let Some(truth) = label else {
                        finish(Err("no emotion name in its folder or file name".into()));
                        return;
                    };
                    let bytes = match JsFuture::from(file.array_buffer()).await {
                        Ok(b) => b.unchecked_into::<ArrayBuffer>(),
                        Err(e) => return finish(Err(format!("could not be read: {e:?}"))),
                    };
                    let finish = std::rc::Rc::new(std::cell::RefCell::new(Some(finish)));
                    let done = Callback::from(move |reply: Reply| {
                        let Some(finish) = finish.borrow_mut().take() else { return };
                        finish(reply.and_then(|r| {
                            // The largest face is the photo's subject.
                            let f = r
                                .faces
                                .iter()
                                .max_by(|a, b| {
                                    (a.face.width() * a.face.height()).total_cmp(&(b.face.width() * b.face.height()))
                                })
                                .ok_or_else(|| "no face found".to_string())?;
                            if r.labels.is_empty() {
                                return Err("the expression model is not loaded".into());
                            }
                            Ok((truth, r.labels.clone(), f.probabilities.clone()))
                        }))
                    });
                    match worker.0.borrow().as_ref() {
                        Some(w) => w.detect_file(bytes, 20.0, done),
                        None => done.emit(Err("the engine is not running".into())),
                    }
                });
            }
        })
    };
    let result = match &eval.matrix {
        Some(m) if eval.running == 0 => {
            let r = Report::from_confusion(m);
            html! {
                <div id="own-result" data-matrix={serde_json::to_string(&m.counts).unwrap_or_default()}
                     data-accuracy={format!("{:.6}", r.accuracy)} data-labels={serde_json::to_string(&m.labels).unwrap_or_default()}>
                    <p>{ format!("Accuracy {} on {} photos · macro-F1 {:.3}", pct(r.accuracy), m.total(), r.macro_f1) }</p>
                    <ReportView report={Rc::new(r)} />
                </div>
            }
        }
        _ if eval.running > 0 => {
            html! { <p class="note" id="own-progress">{ format!("{} photos to go…", eval.running) }</p> }
        }
        _ => html! {},
    };
    html! {
        <section class="card" id="own-photos">
            <h2>{ "Evaluate your own photos" }</h2>
            <p class="note">{ "Choose a folder with one sub-folder per emotion (happy/, neutral/, …) or photos whose file names contain the emotion (anger_01.jpg). Each photo's largest face is classified here, in this tab; nothing is uploaded." }</p>
            <div class="settings">
                <label class="button">{ "Choose a folder" }
                    <input id="own-folder" type="file" multiple=true webkitdirectory=true onchange={on_files.clone()} class="sr-only" />
                </label>
                <label class="button">{ "Choose photos" }
                    <input id="own-files" type="file" multiple=true accept="image/*" onchange={on_files} class="sr-only" />
                </label>
            </div>
            { result }
            { if eval.skipped.is_empty() { html! {} } else { html! {
                <details id="own-skipped"><summary>{ format!("{} photos left out", eval.skipped.len()) }</summary>
                    <ul>{ for eval.skipped.iter().map(|s| html! { <li>{ s.clone() }</li> }) }</ul></details>
            } } }
        </section>
    }
}
