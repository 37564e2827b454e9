//! The browser's WebGPU adapter, and which build of the engine the inference worker loads.
//!
//! The app is built twice from one source: `mien-web`, which runs on the CPU only and which every
//! visitor downloads (the page runs it too), and `mien-gpu`, which adds the WebGPU backend (wgpu
//! and cubecl, about half of the module). The page asks for `mien-gpu` only where it can pay off:
//! when the person picks WebGPU, or when *Auto* has a hardware adapter to time. A software
//! renderer (SwiftShader, llvmpipe) is many times slower than the CPU path, so *Auto* does not
//! download an engine to time it.

use js_sys::Reflect;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::protocol::{ActiveBackend, AutoChoice, Backend, Engine};

/// The browser's WebGPU adapter.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// Vendor, architecture, device and description, as the browser gives them.
    pub name: String,
    /// A software fallback (SwiftShader, llvmpipe): many times slower than the CPU path.
    pub software: bool,
}

/// The browser's WebGPU adapter, if it offers one; from the page or from a worker.
pub async fn webgpu_adapter() -> Option<Adapter> {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
    let gpu = Reflect::get(&navigator, &"gpu".into()).ok().filter(|g| !g.is_undefined() && !g.is_null())?;
    let request: js_sys::Function = Reflect::get(&gpu, &"requestAdapter".into()).ok()?.dyn_into().ok()?;
    let promise: js_sys::Promise = request.call0(&gpu).ok()?.dyn_into().ok()?;
    let adapter = JsFuture::from(promise).await.ok().filter(|a| !a.is_null() && !a.is_undefined())?;
    let info = Reflect::get(&adapter, &"info".into()).ok().filter(|i| !i.is_undefined());
    let field = |obj: &JsValue, key: &str| Reflect::get(obj, &key.into()).ok();
    let fallback = field(&adapter, "isFallbackAdapter").and_then(|v| v.as_bool()).unwrap_or(false)
        || info.as_ref().and_then(|i| field(i, "isFallbackAdapter")).and_then(|v| v.as_bool()).unwrap_or(false);
    let name: String = info
        .as_ref()
        .map(|i| {
            ["vendor", "architecture", "device", "description"]
                .iter()
                .filter_map(|k| field(i, k).and_then(|v| v.as_string()))
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    // Software rasterisers: Chromium's own SwiftShader, and Mesa's llvmpipe (lavapipe), which
    // Linux machines without a GPU driver offer through Vulkan.
    let software = ["swiftshader", "llvmpipe", "lavapipe", "softpipe"].iter().any(|s| name.to_lowercase().contains(s));
    let name = if name.is_empty() { "an unnamed adapter".to_string() } else { name };
    Some(Adapter { name, software: fallback || software })
}

/// Which engine a worker asked to run on `backend` loads: the WebGPU one only when WebGPU is
/// asked for (and the browser has an adapter), or when *Auto* will use or time a hardware
/// adapter. `remembered` is what *Auto* measured on an earlier visit.
pub async fn engine_for(backend: Backend, remembered: Option<&AutoChoice>) -> Engine {
    let auto = match backend {
        Backend::Cpu => return Engine::Cpu,
        Backend::WebGpu => false,
        Backend::Auto => true,
    };
    let Some(adapter) = webgpu_adapter().await else { return Engine::Cpu };
    if !auto {
        return Engine::WebGpu;
    }
    match remembered.filter(|c| c.adapter == adapter.name) {
        Some(c) if c.chosen == ActiveBackend::Cpu => Engine::Cpu,
        Some(_) => Engine::WebGpu,
        None if adapter.software => Engine::Cpu,
        None => Engine::WebGpu,
    }
}
