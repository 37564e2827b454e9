//! The app shell: the inference engine (one worker shared by every page), the backend switch,
//! the self-test, and the pages (`#/live`, `#/photos`, `#/dashboard`), routed by the URL hash so
//! the app stays a set of static files.

use std::cell::RefCell;
use std::rc::Rc;

use gloo::events::EventListener;
use web_sys::HtmlSelectElement;
use yew::prelude::*;

use crate::bridge::{InferenceWorker, WorkerEvent};
use crate::dashboard::Dashboard;
use crate::live::Live;
use crate::photos::Photos;

/// Where the engine stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Engine {
    Loading,
    Ready { backend: String, note: String },
    Failed(String),
}

/// The shared worker. Equality is identity, so pages re-render when it is replaced.
#[derive(Clone)]
pub struct WorkerRef(pub Rc<RefCell<Option<InferenceWorker>>>);

impl PartialEq for WorkerRef {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

/// What every page gets from the shell.
#[derive(Clone, PartialEq)]
pub struct EngineContext {
    pub engine: Engine,
    pub worker: WorkerRef,
    /// Bumped whenever the worker is (re)started: jobs of an older generation were abandoned.
    pub generation: u32,
}

impl EngineContext {
    pub fn ready(&self) -> bool {
        matches!(self.engine, Engine::Ready { .. })
    }

    pub fn backend(&self) -> String {
        match &self.engine {
            Engine::Ready { backend, .. } => backend.clone(),
            _ => String::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Route {
    Live,
    Photos,
    Dashboard,
}

impl Route {
    fn from_hash(hash: &str) -> Route {
        match hash.trim_start_matches('#').trim_start_matches('/') {
            "photos" => Route::Photos,
            "dashboard" => Route::Dashboard,
            _ => Route::Live,
        }
    }

    fn current() -> Route {
        Route::from_hash(&web_sys::window().and_then(|w| w.location().hash().ok()).unwrap_or_default())
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
    let engine = use_state(|| Engine::Loading);
    let backend = use_state(initial_backend);
    let restarts = use_state(|| 0u32);
    // Why the app left the backend the user chose (the GPU was lost), until they choose again.
    let fallback: UseStateHandle<Option<String>> = use_state(|| None);
    let self_test: UseStateHandle<Option<Result<String, String>>> = use_state(|| None);
    let worker = use_mut_ref(|| None::<InferenceWorker>);
    let route = use_state(Route::current);

    {
        let route = route.clone();
        use_effect_with((), move |_| {
            let listener =
                web_sys::window().map(|w| EventListener::new(&w, "hashchange", move |_| route.set(Route::current())));
            move || drop(listener)
        });
    }

    // (Re)start the worker when the backend changes or after it crashed.
    {
        let worker = worker.clone();
        let engine = engine.clone();
        let self_test = self_test.clone();
        let restarts = restarts.clone();
        let chosen = backend.clone();
        let fallback = fallback.clone();
        use_effect_with(((*backend).clone(), *restarts), move |(backend, _)| {
            engine.set(Engine::Loading);
            self_test.set(None);
            // Dropping the old worker answers its pending jobs with an error.
            worker.borrow_mut().take();
            let on_event = {
                let engine = engine.clone();
                let self_test = self_test.clone();
                let restarts = restarts.clone();
                let on_gpu = backend != "cpu";
                Callback::from(move |ev: WorkerEvent| match ev {
                    // Only a worker on a GPU backend can lose its device; a late message from a
                    // replaced worker changes nothing.
                    WorkerEvent::GpuLost(why) if on_gpu => {
                        web_sys::console::warn_1(&format!("mien: the WebGPU device was lost ({why})").into());
                        fallback.set(Some(format!(
                            "The GPU device was lost ({why}); mien moved to the CPU backend and carries on. Choose WebGPU to try the GPU again."
                        )));
                        chosen.set("cpu".into());
                    }
                    WorkerEvent::GpuLost(_) => {}
                    WorkerEvent::Ready { backend, note } => engine.set(Engine::Ready { backend, note }),
                    WorkerEvent::Fatal(e) => engine.set(Engine::Failed(e)),
                    WorkerEvent::SelfTest(r) => self_test.set(Some(r)),
                    WorkerEvent::Crashed(e) => {
                        web_sys::console::warn_1(&format!("mien: the worker crashed ({e}); restarting it").into());
                        // A bounded number of automatic restarts, so a worker that crashes on
                        // start cannot loop forever.
                        if *restarts < 3 {
                            restarts.set(*restarts + 1);
                        } else {
                            engine.set(Engine::Failed(format!("the inference worker keeps crashing: {e}")));
                        }
                    }
                })
            };
            match InferenceWorker::spawn(backend, on_event) {
                Ok(w) => *worker.borrow_mut() = Some(w),
                Err(e) => engine.set(Engine::Failed(e)),
            }
            || ()
        });
    }

    let context = EngineContext {
        engine: (*engine).clone(),
        worker: WorkerRef(worker.clone()),
        generation: *restarts * 1000 + backend_code(&backend),
    };

    let on_backend = {
        let backend = backend.clone();
        let fallback = fallback.clone();
        Callback::from(move |e: Event| {
            let select: HtmlSelectElement = e.target_unchecked_into();
            fallback.set(None);
            backend.set(select.value());
        })
    };
    let on_self_test = {
        let worker = worker.clone();
        let self_test = self_test.clone();
        Callback::from(move |_| {
            self_test.set(None);
            if let Some(w) = worker.borrow().as_ref() {
                w.self_test();
            }
        })
    };

    let (engine_state, engine_text) = match &*engine {
        Engine::Loading => ("loading", "Loading the models…".to_string()),
        Engine::Ready { backend, .. } => ("ready", format!("Running on {backend}")),
        Engine::Failed(e) => ("failed", format!("The engine could not start: {e}")),
    };
    let note = match &*engine {
        Engine::Ready { note, .. } if !note.is_empty() => html! { <p class="note" id="engine-note">{ note }</p> },
        _ => html! {},
    };
    let tab = |r: Route, href: &str, label: &str| {
        let current = *route == r;
        html! {
            <a href={href.to_string()} class={classes!("tab", current.then_some("current"))}
               aria-current={current.then_some("page")}>{ label }</a>
        }
    };
    let page = match *route {
        Route::Live => html! { <Live /> },
        Route::Photos => html! { <Photos /> },
        Route::Dashboard => html! { <Dashboard /> },
    };

    html! {
        <ContextProvider<EngineContext> context={context}>
        <header class="top">
            <h1>{ "mien" }</h1>
            <p class="tagline">{ "Facial expressions, recognised on your own machine. No image leaves this page." }</p>
            <nav aria-label="Pages">
                { tab(Route::Live, "#/live", "Live") }
                { tab(Route::Photos, "#/photos", "Photos") }
                { tab(Route::Dashboard, "#/dashboard", "Dashboard") }
            </nav>
        </header>
        <div class="engine-bar">
            <p id="engine" class={classes!("engine", engine_state)} data-state={engine_state}
               data-backend={context_backend(&engine)} data-restarts={restarts.to_string()} role="status">
                { if engine_state == "loading" { html! { <span class="spinner" aria-hidden="true"></span> } } else { html! {} } }
                { engine_text }
            </p>
            <label>{ "Backend " }
                <select id="backend-select" onchange={on_backend}>
                    <option value="auto" selected={*backend == "auto"}>{ "Auto (WebGPU if available)" }</option>
                    <option value="webgpu" selected={*backend == "webgpu"}>{ "WebGPU" }</option>
                    <option value="cpu" selected={*backend == "cpu"}>{ "CPU" }</option>
                </select>
            </label>
            <button id="self-test-button" type="button" onclick={on_self_test}
                disabled={!matches!(*engine, Engine::Ready { .. })}
                title="Run the face detector's networks with facenet-pytorch's f32 weights (a 2 MB download) on reference inputs and compare with its reference outputs">{ "Self-test" }</button>
            { note }
            { match &*fallback {
                Some(why) => html! { <p class="note" id="fallback-note" role="alert">{ why.clone() }</p> },
                None => html! {},
            } }
            { self_test_view(&self_test) }
        </div>
        <main>{ page }</main>
        </ContextProvider<EngineContext>>
    }
}

fn backend_code(b: &str) -> u32 {
    match b {
        "webgpu" => 1,
        "cpu" => 2,
        _ => 0,
    }
}

fn context_backend(engine: &Engine) -> String {
    match engine {
        Engine::Ready { backend, .. } => backend.clone(),
        _ => String::new(),
    }
}

fn self_test_view(result: &Option<Result<String, String>>) -> Html {
    match result {
        None => html! {},
        Some(Ok(json)) => {
            let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
            let worst = ["pnet", "rnet", "onet"].iter().filter_map(|k| v[k].as_f64()).fold(0.0, f64::max);
            let verdict = if worst <= 1e-4 { "passed" } else { "FAILED" };
            html! {
                <p id="self-test" class="note" data-result={json.clone()} data-verdict={verdict}>
                    { format!("Self-test {verdict}: with facenet-pytorch's f32 weights on this backend, the networks deviate at most {worst:.1e} from its reference outputs (P-Net {:.1e}, R-Net {:.1e}, O-Net {:.1e}).",
                        v["pnet"].as_f64().unwrap_or(f64::NAN), v["rnet"].as_f64().unwrap_or(f64::NAN), v["onet"].as_f64().unwrap_or(f64::NAN)) }
                </p>
            }
        }
        Some(Err(e)) => {
            html! { <p id="self-test" class="error" data-verdict="error">{ format!("Self-test could not run: {e}") }</p> }
        }
    }
}
