//! Evaluating the visitor's own labelled photos, in the page.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::ArrayBuffer;
use mien::classify::argmax;
use mien::metrics::{ConfusionMatrix, Report};
use mien::Emotion;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{File, HtmlInputElement};
use yew::prelude::*;

use super::report::{pct, ReportView};
use crate::engine::EngineContext;
use crate::protocol::Reply;

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
pub fn own_photos() -> Html {
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
                                        m.add(t, argmax(&probs));
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
                    let finish = Rc::new(RefCell::new(Some(finish)));
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
                    worker.detect_file(bytes, mien::detect::DEFAULT_MIN_FACE_FRACTION, done);
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
