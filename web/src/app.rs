//! The app shell: the engine bar (state, backend switch, self-test) and the pages (`#/live`,
//! `#/photos`, `#/dashboard`), routed by the URL hash so the app stays a set of static files.

use gloo::events::EventListener;
use mien::detect::selftest::SelfTest;
use web_sys::HtmlSelectElement;
use yew::prelude::*;

use crate::dashboard::Dashboard;
use crate::engine::{use_engine, Engine, EngineContext};
use crate::live::Live;
use crate::photos::Photos;
use crate::protocol::Backend;

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

#[function_component(App)]
pub fn app() -> Html {
    let engine = use_engine();
    let route = use_state(Route::current);

    {
        let route = route.clone();
        use_effect_with((), move |_| {
            let listener =
                web_sys::window().map(|w| EventListener::new(&w, "hashchange", move |_| route.set(Route::current())));
            move || drop(listener)
        });
    }

    let on_backend = {
        let choose = engine.choose.clone();
        Callback::from(move |e: Event| {
            let select: HtmlSelectElement = e.target_unchecked_into();
            if let Ok(backend) = select.value().parse::<Backend>() {
                choose.emit(backend);
            }
        })
    };
    let on_self_test = {
        let run = engine.run_self_test.clone();
        Callback::from(move |_| run.emit(()))
    };

    let context = &engine.context;
    let state = &context.engine;
    let (engine_state, engine_text) = match state {
        Engine::Loading => ("loading", "Loading the models…".to_string()),
        Engine::Ready { backend, .. } => match context.worker.pool_size() {
            1 => ("ready", format!("Running on {backend}")),
            n => ("ready", format!("Running on {backend}, {n} workers")),
        },
        Engine::Failed(e) => ("failed", format!("The engine could not start: {e}")),
    };
    let note = match state {
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
        <ContextProvider<EngineContext> context={context.clone()}>
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
               data-backend={context.backend().map(|b| b.to_string()).unwrap_or_default()}
               data-restarts={context.generation.restarts.to_string()}
               data-workers={context.worker.pool_size().to_string()} role="status">
                { if engine_state == "loading" { html! { <span class="spinner" aria-hidden="true"></span> } } else { html! {} } }
                { engine_text }
            </p>
            <label>{ "Backend " }
                <select id="backend-select" onchange={on_backend}>
                    { for Backend::ALL.into_iter().map(|b| html! {
                        <option value={b.as_str()} selected={engine.chosen == b}>{ b.label() }</option>
                    }) }
                </select>
            </label>
            { auto_choice_view(state) }
            <button id="self-test-button" type="button" onclick={on_self_test}
                disabled={!context.ready()}
                title="Run the face detector's networks with facenet-pytorch's f32 weights (a 2 MB download) on reference inputs and compare with its reference outputs">{ "Self-test" }</button>
            { note }
            { match &engine.fallback {
                Some(why) => html! { <p class="note" id="fallback-note" role="alert">{ why.clone() }</p> },
                None => html! {},
            } }
            { self_test_view(&engine.self_test) }
        </div>
        <main>{ page }</main>
        </ContextProvider<EngineContext>>
    }
}

/// What *Auto* measured, beside the backend switch: the choice and the test frame's time on
/// each backend.
fn auto_choice_view(engine: &Engine) -> Html {
    let Engine::Ready { auto: Some(c), .. } = engine else { return html! {} };
    let budget = crate::protocol::AUTO_WEBGPU_BUDGET_MS as f64 / 1000.0;
    let gpu = match c.webgpu_ms {
        _ if c.software => "a software renderer, not timed".to_string(),
        Some(ms) => format!("{ms:.0} ms"),
        None => format!("> {budget:.0} s"),
    };
    html! {
        <span id="auto-choice" class="auto-choice" data-chosen={c.chosen.to_string()} data-software={c.software.to_string()}
            data-cpu-ms={format!("{:.1}", c.cpu_ms)} data-webgpu-ms={c.webgpu_ms.map(|ms| format!("{ms:.1}")).unwrap_or_default()}
            title={format!("A test frame (face detection and one face's classification) timed on each backend; WebGPU adapter: {}", c.adapter)}>
            { format!("Auto → {} (test frame: CPU {:.0} ms, WebGPU {gpu})", c.chosen, c.cpu_ms) }
        </span>
    }
}

fn self_test_view(result: &Option<Result<SelfTest, String>>) -> Html {
    match result {
        None => html! {},
        Some(Ok(t)) => {
            let json = serde_json::to_string(t).unwrap_or_default();
            // `f32::max` skips a NaN deviation, as a null in the JSON would be skipped.
            let worst = [t.pnet, t.rnet, t.onet].into_iter().fold(0.0f32, f32::max);
            let verdict = if worst <= 1e-4 { "passed" } else { "FAILED" };
            html! {
                <p id="self-test" class="note" data-result={json} data-verdict={verdict}>
                    { format!("Self-test {verdict}: with facenet-pytorch's f32 weights on this backend, the networks deviate at most {worst:.1e} from its reference outputs (P-Net {:.1e}, R-Net {:.1e}, O-Net {:.1e}).",
                        t.pnet, t.rnet, t.onet) }
                </p>
            }
        }
        Some(Err(e)) => {
            html! { <p id="self-test" class="error" data-verdict="error">{ format!("Self-test could not run: {e}") }</p> }
        }
    }
}
