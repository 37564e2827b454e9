//! The photos page: choose, drop or paste photos; each appears with its faces boxed and their
//! landmarks marked, computed by the worker on this machine.

use std::cell::RefCell;
use std::rc::Rc;

use gloo::file::{Blob, ObjectUrl};
use js_sys::ArrayBuffer;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{DragEvent, File, FileList, HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

use crate::bridge::{InferenceWorker, WorkerEvent};
use crate::worker::DetectReply;

/// Where the engine stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Engine {
    Loading,
    Ready { backend: String, note: String },
    Failed(String),
}

#[derive(Clone, PartialEq)]
pub enum Status {
    Pending,
    Done(DetectReply),
    Failed(String),
}

#[derive(Clone)]
pub struct Photo {
    pub id: u32,
    pub name: String,
    pub url: Rc<ObjectUrl>,
    pub status: Status,
}

impl PartialEq for Photo {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.status == other.status
    }
}

#[derive(Clone, PartialEq)]
pub struct PageState {
    pub engine: Engine,
    pub photos: Vec<Photo>,
    /// The last self-test: JSON of the deviations, or an error.
    pub self_test: Option<Result<String, String>>,
}

pub enum Action {
    Engine(Engine),
    Add(Photo),
    Finish(u32, Result<DetectReply, String>),
    /// The worker was replaced or died: jobs in flight will never be answered.
    AbandonPending(String),
    Clear,
    SelfTest(Result<String, String>),
}

impl Reducible for PageState {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut s = (*self).clone();
        match action {
            Action::Engine(e) => {
                s.engine = e;
                s.self_test = None;
            }
            Action::Add(p) => s.photos.push(p),
            Action::Finish(id, r) => {
                if let Some(p) = s.photos.iter_mut().find(|p| p.id == id) {
                    p.status = match r {
                        Ok(reply) => Status::Done(reply),
                        Err(e) => Status::Failed(e),
                    };
                }
            }
            Action::AbandonPending(why) => {
                for p in s.photos.iter_mut().filter(|p| p.status == Status::Pending) {
                    p.status = Status::Failed(why.clone());
                }
            }
            Action::Clear => s.photos.clear(),
            Action::SelfTest(r) => s.self_test = Some(r),
        }
        Rc::new(s)
    }
}

fn initial_backend() -> String {
    let search = web_sys::window().and_then(|w| w.location().search().ok()).unwrap_or_default();
    web_sys::UrlSearchParams::new_with_str(&search)
        .ok()
        .and_then(|p| p.get("backend"))
        .filter(|b| ["auto", "webgpu", "cpu"].contains(&b.as_str()))
        .unwrap_or_else(|| "auto".into())
}

#[function_component(App)]
pub fn app() -> Html {
    let state = use_reducer(|| PageState { engine: Engine::Loading, photos: Vec::new(), self_test: None });
    let backend = use_state(initial_backend);
    let min_face = use_state(|| 20.0f64);
    let worker: Rc<RefCell<Option<InferenceWorker>>> = use_mut_ref(|| None);
    let next_id = use_mut_ref(|| 0u32);

    // (Re)start the worker whenever the chosen backend changes.
    {
        let worker = worker.clone();
        let dispatcher = state.dispatcher();
        use_effect_with((*backend).clone(), move |backend: &String| {
            dispatcher
                .dispatch(Action::AbandonPending("interrupted: the backend was switched; add the photo again".into()));
            dispatcher.dispatch(Action::Engine(Engine::Loading));
            let on_event = {
                let dispatcher = dispatcher.clone();
                Callback::from(move |ev: WorkerEvent| match ev {
                    WorkerEvent::Ready { backend, note } => {
                        dispatcher.dispatch(Action::Engine(Engine::Ready { backend, note }))
                    }
                    WorkerEvent::Fatal(e) => dispatcher.dispatch(Action::Engine(Engine::Failed(e))),
                    WorkerEvent::Result { id, reply } => dispatcher.dispatch(Action::Finish(id, reply)),
                    WorkerEvent::SelfTest(r) => dispatcher.dispatch(Action::SelfTest(r)),
                    WorkerEvent::Crashed(e) => {
                        dispatcher
                            .dispatch(Action::AbandonPending(format!("the detector crashed ({e}); reload the page")));
                        dispatcher.dispatch(Action::Engine(Engine::Failed(format!("the detector crashed: {e}"))));
                    }
                })
            };
            let spawned = InferenceWorker::spawn(backend, on_event);
            match spawned {
                Ok(w) => *worker.borrow_mut() = Some(w),
                Err(e) => {
                    *worker.borrow_mut() = None;
                    dispatcher.dispatch(Action::Engine(Engine::Failed(e)));
                }
            }
            || ()
        });
    }

    let add_files = {
        let worker = worker.clone();
        let dispatcher = state.dispatcher();
        let next_id = next_id.clone();
        let min_face = min_face.clone();
        Callback::from(move |files: Vec<File>| {
            for file in files {
                let id = {
                    let mut n = next_id.borrow_mut();
                    *n += 1;
                    *n
                };
                let url = Rc::new(ObjectUrl::from(Blob::from(file.clone())));
                dispatcher.dispatch(Action::Add(Photo { id, name: file.name(), url, status: Status::Pending }));
                let worker = worker.clone();
                let dispatcher = dispatcher.clone();
                let min_face = *min_face;
                wasm_bindgen_futures::spawn_local(async move {
                    let bytes = match JsFuture::from(file.array_buffer()).await {
                        Ok(b) => b.unchecked_into::<ArrayBuffer>(),
                        Err(e) => {
                            dispatcher.dispatch(Action::Finish(id, Err(format!("the file could not be read: {e:?}"))));
                            return;
                        }
                    };
                    match worker.borrow().as_ref() {
                        Some(w) => w.detect(id, bytes, min_face),
                        None => dispatcher.dispatch(Action::Finish(id, Err("the detector is not running".into()))),
                    }
                });
            }
        })
    };

    let on_input_change = {
        let add_files = add_files.clone();
        Callback::from(move |e: Event| {
            let input: HtmlInputElement = e.target_unchecked_into();
            add_files.emit(files_of(input.files()));
            input.set_value("");
        })
    };
    let on_drop = {
        let add_files = add_files.clone();
        Callback::from(move |e: DragEvent| {
            e.prevent_default();
            add_files.emit(files_of(e.data_transfer().and_then(|d| d.files())));
        })
    };
    let on_drag_over = Callback::from(|e: DragEvent| e.prevent_default());
    let on_backend = {
        let backend = backend.clone();
        Callback::from(move |e: Event| {
            let select: HtmlSelectElement = e.target_unchecked_into();
            backend.set(select.value());
        })
    };
    let on_min_face = {
        let min_face = min_face.clone();
        Callback::from(move |e: Event| {
            let input: HtmlInputElement = e.target_unchecked_into();
            if let Ok(v) = input.value().parse::<f64>() {
                min_face.set(v.clamp(12.0, 1000.0));
            }
        })
    };
    let on_self_test = {
        let worker = worker.clone();
        Callback::from(move |_| {
            if let Some(w) = worker.borrow().as_ref() {
                w.self_test();
            }
        })
    };
    let self_test = match &state.self_test {
        None => html! {},
        Some(Ok(json)) => {
            let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
            let worst = ["pnet", "rnet", "onet"].iter().filter_map(|k| v[k].as_f64()).fold(0.0, f64::max);
            let verdict = if worst <= 1e-4 { "passed" } else { "FAILED" };
            html! {
                <p id="self-test" class="note" data-result={json.clone()} data-verdict={verdict}>
                    { format!("Self-test {verdict}: largest deviation from the reference outputs {worst:.1e} (P-Net {:.1e}, R-Net {:.1e}, O-Net {:.1e}).",
                        v["pnet"].as_f64().unwrap_or(f64::NAN), v["rnet"].as_f64().unwrap_or(f64::NAN), v["onet"].as_f64().unwrap_or(f64::NAN)) }
                </p>
            }
        }
        Some(Err(e)) => {
            html! { <p id="self-test" class="error" data-verdict="error">{ format!("Self-test could not run: {e}") }</p> }
        }
    };
    let on_clear = {
        let dispatcher = state.dispatcher();
        Callback::from(move |_| dispatcher.dispatch(Action::Clear))
    };

    let (engine_state, engine_text) = match &state.engine {
        Engine::Loading => ("loading", "Loading the face detector…".to_string()),
        Engine::Ready { backend, .. } => ("ready", format!("Running on {backend}")),
        Engine::Failed(e) => ("failed", format!("The face detector could not start: {e}")),
    };
    let engine_backend = match &state.engine {
        Engine::Ready { backend, .. } => backend.clone(),
        _ => String::new(),
    };
    let note = match &state.engine {
        Engine::Ready { note, .. } if !note.is_empty() => html! { <p class="note">{ note }</p> },
        _ => html! {},
    };

    html! {
        <>
        <header class="top">
            <h1>{ "mien" }</h1>
            <p class="tagline">{ "Faces found on your own machine. No image leaves this page." }</p>
        </header>
        <main>
            <section class="controls" aria-label="Settings">
                <label class="drop" ondrop={on_drop} ondragover={on_drag_over}>
                    <input id="file-input" type="file" multiple=true accept="image/*" onchange={on_input_change} />
                    <span>{ "Choose photos, or drop them here" }</span>
                </label>
                <div class="settings">
                    <label>{ "Backend " }
                        <select id="backend-select" onchange={on_backend} value={(*backend).clone()}>
                            <option value="auto" selected={*backend == "auto"}>{ "Auto (WebGPU if available)" }</option>
                            <option value="webgpu" selected={*backend == "webgpu"}>{ "WebGPU" }</option>
                            <option value="cpu" selected={*backend == "cpu"}>{ "CPU" }</option>
                        </select>
                    </label>
                    <label>{ "Smallest face (px) " }
                        <input id="min-face" type="number" min="12" max="1000" step="1" value={min_face.to_string()} onchange={on_min_face} />
                    </label>
                    <button type="button" onclick={on_clear} disabled={state.photos.is_empty()}>{ "Clear" }</button>
                    <button id="self-test-button" type="button" onclick={on_self_test}
                        disabled={!matches!(state.engine, Engine::Ready { .. })}
                        title="Run the detector's networks on reference inputs and compare with the reference outputs">{ "Self-test" }</button>
                </div>
                <p id="engine" class={classes!("engine", engine_state)} data-state={engine_state} data-backend={engine_backend} role="status">{ engine_text }</p>
                { note }
                { self_test }
            </section>
            <section id="photos" class="photos" aria-live="polite">
                { for state.photos.iter().rev().map(photo_card) }
            </section>
        </main>
        </>
    }
}

fn files_of(list: Option<FileList>) -> Vec<File> {
    let Some(list) = list else { return Vec::new() };
    (0..list.length()).filter_map(|i| list.get(i)).collect()
}

fn photo_card(photo: &Photo) -> Html {
    let url = photo.url.to_string();
    match &photo.status {
        Status::Pending => html! {
            <article class="photo" key={photo.id} data-name={photo.name.clone()} data-state="pending">
                <figure><img src={url} alt={photo.name.clone()} /></figure>
                <p class="caption">{ format!("{} · detecting…", photo.name) }</p>
            </article>
        },
        Status::Failed(e) => html! {
            <article class="photo failed" key={photo.id} data-name={photo.name.clone()} data-state="error">
                <p class="caption">{ photo.name.clone() }</p>
                <p class="error" role="alert">{ e.clone() }</p>
            </article>
        },
        Status::Done(r) => {
            let json = serde_json::to_string(r).unwrap_or_default();
            let n = r.faces.len();
            let caption = format!(
                "{} · {} face{} · {:.0} ms on {}",
                photo.name,
                n,
                if n == 1 { "" } else { "s" },
                r.detect_ms,
                r.backend
            );
            let stroke = (r.width.max(r.height) as f32 / 300.0).max(1.0);
            html! {
                <article class="photo" key={photo.id} data-name={photo.name.clone()} data-state="done"
                    data-faces={n.to_string()} data-result={json}>
                    <figure>
                        <img src={url} alt={photo.name.clone()} />
                        <svg class="overlay" viewBox={format!("0 0 {} {}", r.width, r.height)} preserveAspectRatio="none">
                            { for r.faces.iter().map(|f| html! {
                                <g class="face">
                                    <rect x={f.bbox[0].to_string()} y={f.bbox[1].to_string()}
                                        width={f.width().to_string()} height={f.height().to_string()}
                                        stroke-width={stroke.to_string()} />
                                    { for f.landmarks.iter().map(|p| html! {
                                        <circle cx={p[0].to_string()} cy={p[1].to_string()} r={(stroke * 2.0).to_string()} />
                                    }) }
                                </g>
                            }) }
                        </svg>
                    </figure>
                    <p class="caption">{ caption }</p>
                </article>
            }
        }
    }
}
