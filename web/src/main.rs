//! mien's web app. The same wasm module runs the page (Yew) and, in a module Web Worker, the
//! models (burn on WebGPU or CPU), so burn is downloaded and compiled once.

mod app;
mod bridge;
mod worker;

fn main() {
    console_error_panic_hook::set_once();
    // wasm-bindgen runs `main` wherever the module is initialised: in the worker there is no
    // window, and `worker.js` drives the module through `worker::worker_handle` instead.
    if web_sys::window().is_none() {
        return;
    }
    if let Some(root) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.get_element_by_id("app")) {
        yew::Renderer::<app::App>::with_root(root).render();
    } else {
        yew::Renderer::<app::App>::new().render();
    }
}
