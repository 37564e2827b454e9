//! The inference worker: the only place in the browser that holds models and runs tensor ops.
//!
//! `worker.js` loads the same wasm module as the page and forwards every message to
//! [`worker_handle`]. Protocol (plain JS objects):
//! - page → worker `{type: "init", backend: "auto" | "webgpu" | "cpu"}`;
//!   worker → page `{type: "ready", backend: "WebGPU" | "CPU", note?}` or `{type: "fatal", error}`.
//! - page → worker `{type: "detect", id, bytes: ArrayBuffer, minFace}` (an image file), or
//!   `{type: "detect", id, rgba: ArrayBuffer, width, height, minFace}` (a video frame);
//!   worker → page `{type: "result", id, json}` where `json` is a [`DetectReply`]: every face
//!   with its box, landmarks and, when the expression model loaded, its emotion probabilities.
//! - page → worker `{type: "selftest"}`; worker → page `{type: "selftest", json}`: the networks'
//!   largest deviation from the reference outputs on this backend.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{ArrayBuffer, Object, Reflect, Uint8Array};
use mien::burn::prelude::Device;
use mien::{DetectorConfig, Emotion, ExpressionClassifier, FaceDetector, FaceExpression, Frame, MtcnnWeights};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{DedicatedWorkerGlobalScope, Response};

/// What the worker answers for one image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DetectReply {
    pub width: u32,
    pub height: u32,
    /// Faces, best score first; `probabilities` follow `labels` (empty without a model).
    pub faces: Vec<FaceExpression>,
    /// The expression model's label order (empty when it could not be loaded).
    #[serde(default)]
    pub labels: Vec<Emotion>,
    /// Milliseconds spent decoding the image.
    pub decode_ms: f64,
    /// Milliseconds spent in the MTCNN cascade.
    pub detect_ms: f64,
    /// Milliseconds spent cropping and classifying the faces.
    #[serde(default)]
    pub classify_ms: f64,
    pub backend: String,
}

struct State {
    detector: FaceDetector,
    /// `None` when the expression model could not be loaded: faces are still found.
    classifier: Option<ExpressionClassifier>,
    backend: &'static str,
}

thread_local! {
    static STATE: RefCell<Option<Rc<State>>> = const { RefCell::new(None) };
}

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn now() -> f64 {
    scope().performance().map(|p| p.now()).unwrap_or_else(js_sys::Date::now)
}

fn post(fields: &[(&str, JsValue)]) {
    let out = Object::new();
    for (k, v) in fields {
        let _ = Reflect::set(&out, &JsValue::from_str(k), v);
    }
    if let Err(e) = scope().post_message(&out) {
        web_sys::console::error_2(&"mien worker: postMessage failed".into(), &e);
    }
}

fn get(msg: &JsValue, key: &str) -> JsValue {
    Reflect::get(msg, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// Entry point for every message the page sends (called by `worker.js`).
#[wasm_bindgen]
pub fn worker_handle(msg: JsValue) {
    let kind = get(&msg, "type").as_string().unwrap_or_default();
    wasm_bindgen_futures::spawn_local(async move {
        match kind.as_str() {
            "init" => {
                let wanted = get(&msg, "backend").as_string().unwrap_or_else(|| "auto".into());
                match init(&wanted).await {
                    Ok((state, note)) => {
                        let backend = state.backend;
                        STATE.with(|s| *s.borrow_mut() = Some(Rc::new(state)));
                        post(&[("type", "ready".into()), ("backend", backend.into()), ("note", note.into())]);
                    }
                    Err(e) => post(&[("type", "fatal".into()), ("error", e.into())]),
                }
            }
            "detect" => {
                let id = get(&msg, "id");
                let reply = match detect(&msg).await {
                    Ok(r) => serde_json::to_string(&r).unwrap_or_else(|e| error_json(&e.to_string())),
                    Err(e) => error_json(&e),
                };
                post(&[("type", "result".into()), ("id", id), ("json", reply.into())]);
            }
            "selftest" => {
                let reply = match selftest().await {
                    Ok(r) => serde_json::to_string(&r).unwrap_or_else(|e| error_json(&e.to_string())),
                    Err(e) => error_json(&e),
                };
                post(&[("type", "selftest".into()), ("json", reply.into())]);
            }
            other => web_sys::console::warn_1(&format!("mien worker: unknown message {other:?}").into()),
        }
    });
}

fn error_json(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// Picks the backend, fetches the weights and warms the networks up.
async fn init(wanted: &str) -> Result<(State, String), String> {
    let weights = fetch_weights("./assets/mtcnn").await?;
    let mut note = String::new();
    let software = if wanted == "auto" { software_webgpu().await } else { None };
    let (device, backend) = match wanted {
        "cpu" => (Device::flex(), "CPU"),
        "auto" if software.is_some() => {
            note = format!(
                "this browser's WebGPU runs on a software renderer ({}), which is slower than the CPU path; \
                 using the CPU backend (choose WebGPU to use it anyway)",
                software.unwrap_or_default()
            );
            (Device::flex(), "CPU")
        }
        _ => match Device::wgpu_options().init_async().await {
            Ok(d) => (d, "WebGPU"),
            Err(e) => {
                note = if wanted == "webgpu" {
                    format!("WebGPU was requested but is not available ({e}); using the CPU backend")
                } else {
                    "this browser offers no WebGPU adapter; using the CPU backend".to_string()
                };
                (Device::flex(), "CPU")
            }
        },
    };
    let detector = FaceDetector::new(&weights, DetectorConfig::default(), &device).map_err(|e| e.to_string())?;
    let classifier = match load_classifier(&device).await {
        Ok(c) => Some(c),
        Err(e) => {
            if !note.is_empty() {
                note.push_str("; ");
            }
            note.push_str(&format!(
                "the expression model could not be loaded ({e}): faces are found but not classified"
            ));
            None
        }
    };
    // Warm-up: the first run compiles WebGPU shaders and sizes buffers, so the user's first
    // photo (or camera frame) is not the slow one.
    let warm = Frame::from_rgb(96, 96, vec![128; 96 * 96 * 3]).map_err(|e| e.to_string())?;
    detector.detect_async(&warm).await.map_err(|e| e.to_string())?;
    if let Some(c) = &classifier {
        let size = c.manifest().input_size;
        let crop = mien::FaceCrop { size, pixels: vec![128; (size * size) as usize] };
        c.classify_async(&[&crop]).await.map_err(|e| e.to_string())?;
    }
    Ok((State { detector, classifier, backend }, note))
}

/// The name of the browser's WebGPU adapter when it is a software fallback (SwiftShader, say):
/// on such an adapter burn runs many times slower than on the CPU backend.
async fn software_webgpu() -> Option<String> {
    let gpu = Reflect::get(&scope().navigator(), &"gpu".into()).ok().filter(|g| !g.is_undefined())?;
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
    (fallback || software).then(|| if name.is_empty() { "a fallback adapter".into() } else { name })
}

async fn load_classifier(device: &Device) -> Result<ExpressionClassifier, String> {
    let manifest = fetch_bytes("./assets/model/manifest.json").await?;
    let weights = fetch_bytes("./assets/model/classifier.safetensors").await?;
    ExpressionClassifier::load(&manifest, &weights, device).map_err(|e| e.to_string())
}

async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    let resp =
        JsFuture::from(scope().fetch_with_str(url)).await.map_err(|e| format!("could not fetch {url}: {e:?}"))?;
    let resp: Response = resp.unchecked_into();
    if !resp.ok() {
        return Err(format!("could not fetch {url}: HTTP {} (is the app's assets/ folder deployed?)", resp.status()));
    }
    let buf = JsFuture::from(resp.array_buffer().map_err(|e| format!("{url}: {e:?}"))?)
        .await
        .map_err(|e| format!("{url}: {e:?}"))?;
    Ok(Uint8Array::new(&buf).to_vec())
}

/// The MTCNN weights in `dir`: `./assets/mtcnn` holds the shipped f16 + int8 ones, its `reference/`
/// folder facenet-pytorch's f32 ones (fetched only by the self-test).
async fn fetch_weights(dir: &str) -> Result<MtcnnWeights, String> {
    let [p, r, o] = mien::detect::WEIGHT_FILES;
    Ok(MtcnnWeights {
        pnet: fetch_bytes(&format!("{dir}/{p}")).await?,
        rnet: fetch_bytes(&format!("{dir}/{r}")).await?,
        onet: fetch_bytes(&format!("{dir}/{o}")).await?,
    })
}

async fn selftest() -> Result<mien::detect::selftest::SelfTest, String> {
    let state = STATE
        .with(|s| s.borrow().clone())
        .ok_or_else(|| "the detector is still loading; try again in a moment".to_string())?;
    let golden: serde_json::Value = serde_json::from_slice(&fetch_bytes("./assets/mtcnn/golden_outputs.json").await?)
        .map_err(|e| format!("golden_outputs.json: {e}"))?;
    // The golden outputs are facenet-pytorch's, from its f32 weights: the networks are checked
    // with those, on the backend in use, so a wrong kernel or driver shows at 1e-4 (the shipped
    // f16 + int8 weights move outputs by up to 2e-3 by design).
    let reference = fetch_weights("./assets/mtcnn/reference").await?;
    let detector = FaceDetector::new(&reference, state.detector.config().clone(), state.detector.device())
        .map_err(|e| e.to_string())?;
    mien::detect::selftest::run(&detector, &golden).await
}

async fn detect(msg: &JsValue) -> Result<DetectReply, String> {
    let state = STATE
        .with(|s| s.borrow().clone())
        .ok_or_else(|| "the detector is still loading; try again in a moment".to_string())?;
    let t0 = now();
    let frame = if let Ok(rgba) = get(msg, "rgba").dyn_into::<ArrayBuffer>() {
        let width = get(msg, "width").as_f64().unwrap_or(0.0) as u32;
        let height = get(msg, "height").as_f64().unwrap_or(0.0) as u32;
        Frame::from_rgba(width, height, &Uint8Array::new(&rgba).to_vec()).map_err(|e| e.to_string())?
    } else {
        let bytes = get(msg, "bytes");
        let bytes: ArrayBuffer = bytes.dyn_into().map_err(|_| "no image bytes in the request".to_string())?;
        Frame::decode(&Uint8Array::new(&bytes).to_vec()).map_err(|e| e.to_string())?
    };
    let t1 = now();
    let mut config = state.detector.config().clone();
    if let Some(min_face) = get(msg, "minFace").as_f64() {
        config.min_face_size = min_face as f32;
    }
    let faces = state.detector.detect_with(&frame, &config).await.map_err(|e| e.to_string())?;
    let t2 = now();
    let (faces, labels) = match &state.classifier {
        Some(c) => {
            let faces = mien::pipeline::classify_faces(c, &frame, faces).await.map_err(|e| e.to_string())?;
            (faces, c.manifest().labels.clone())
        }
        None => {
            (faces.into_iter().map(|face| FaceExpression { face, probabilities: Vec::new() }).collect(), Vec::new())
        }
    };
    let t3 = now();
    Ok(DetectReply {
        width: frame.width(),
        height: frame.height(),
        faces,
        labels,
        decode_ms: t1 - t0,
        detect_ms: t2 - t1,
        classify_ms: t3 - t2,
        backend: state.backend.to_string(),
    })
}
