//! mien's web app. The same wasm module runs the page (Yew) and, in a module Web Worker, the
//! models (burn on the CPU), so burn is downloaded and compiled once. Built with the `webgpu`
//! feature (the `mien-gpu` binary), it also runs them on WebGPU; the worker loads that build only
//! when WebGPU is to be used or timed (see `gpu`).
//!
//! Modules, each depending only on those listed before it: `protocol` (the messages between page
//! and worker), `gpu` (the WebGPU adapter, and which build a worker loads), `worker` (the
//! worker's side), `bridge` (the page's side of the worker), `engine`
//! (the shared engine and its context), `widgets` (views the pages share), the pages (`live`,
//! `photos`, `dashboard`), and `app` (the shell that routes to them).

mod app;
mod bridge;
mod dashboard;
mod engine;
mod gpu;
mod live;
mod photos;
mod protocol;
mod widgets;
mod worker;

// The linker's constructors (`.init_array`: burn's compiler stack registers its operations with
// `inventory`). Unless the module calls them itself, wasm-ld treats it as a command that is
// entered once and runs every constructor at the start of *every* exported function: each call
// from JavaScript into the module (an event handler, a timer, a `postMessage` answer, even a
// string handed over) then re-ran all of them, which took most of the page's and the worker's
// time on the live page. Calling them once here, first thing in both, stops that.
#[cfg(target_family = "wasm")]
unsafe extern "C" {
    fn __wasm_call_ctors();
}

fn main() {
    // SAFETY: runs once per instance, before any other code of the module (wasm-bindgen calls
    // `main` right after instantiation, in the page and in the worker).
    #[cfg(target_family = "wasm")]
    unsafe {
        __wasm_call_ctors();
    }
    console_error_panic_hook::set_once();
    // wasm-bindgen runs `main` wherever the module is initialised: in the worker there is no
    // window, and `worker.js` drives the module through `worker::worker_handle` instead.
    if web_sys::window().is_none() {
        return;
    }
    register_service_worker();
    if let Some(root) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.get_element_by_id("app")) {
        yew::Renderer::<app::App>::with_root(root).render();
    } else {
        yew::Renderer::<app::App>::new().render();
    }
}

/// Caches the app's own files for instant reloads and offline use (see `web/sw.js`). Without
/// service-worker support (or on a non-secure origin) the app simply runs uncached.
fn register_service_worker() {
    let Some(window) = web_sys::window() else { return };
    // Through Reflect: no extra web-sys features (they would rebuild every web-sys dependant).
    let Ok(container) = js_sys::Reflect::get(&window.navigator(), &"serviceWorker".into()) else { return };
    if container.is_undefined() {
        return;
    }
    let register = js_sys::Reflect::get(&container, &"register".into())
        .ok()
        .and_then(|f| wasm_bindgen::JsCast::dyn_into::<js_sys::Function>(f).ok());
    if let Some(register) = register {
        if let Ok(promise) = register.call1(&container, &"./sw.js".into()) {
            // A refused registration (private mode, say) only means no offline cache.
            let promise: js_sys::Promise = wasm_bindgen::JsCast::unchecked_into(promise);
            wasm_bindgen_futures::spawn_local(async move {
                let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
            });
        }
    }
}
