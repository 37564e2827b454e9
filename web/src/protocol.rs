//! The messages between the page ([`crate::bridge`]) and the inference worker ([`crate::worker`]).
//!
//! Every message is a Rust type, converted to and from a plain JS object with serde
//! (`serde-wasm-bindgen`); the object's `type` field names the message. Image bytes and video
//! pixels stay JS `ArrayBuffer`s inside those objects (`serde_wasm_bindgen::preserve`) and go in
//! `postMessage`'s transfer list, so they move to the worker without a copy.
//!
//! - page → worker: [`Request::Init`] (sent once, with the page's compiled wasm module, which
//!   `worker.js` instantiates, or imports the WebGPU build instead), [`Request::Detect`] (one image or video frame),
//!   [`Request::SelfTest`].
//! - worker → page: [`Response::Ready`] or [`Response::Fatal`] after `Init`,
//!   [`Response::Detected`] for each `Detect`, [`Response::SelfTest`]. `worker.js` itself sends
//!   [`Response::Fatal`] when the module fails to load and [`Response::GpuLost`] when a WebGPU
//!   device is lost.

use std::fmt;
use std::str::FromStr;

use js_sys::{Array, ArrayBuffer};
use mien::detect::selftest::SelfTest;
use mien::track::Step;
use mien::{Emotion, FaceExpression, Views};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;

/// The backend the user asks for (the backend select and the `?backend=` URL parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// WebGPU when the browser has a hardware adapter, else the CPU.
    #[default]
    Auto,
    WebGpu,
    Cpu,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::Auto, Backend::WebGpu, Backend::Cpu];

    /// The value of the select option and of the URL parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::WebGpu => "webgpu",
            Backend::Cpu => "cpu",
        }
    }

    /// The select option's text.
    pub fn label(self) -> &'static str {
        match self {
            Backend::Auto => "Auto (the faster here)",
            Backend::WebGpu => "WebGPU",
            Backend::Cpu => "CPU",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Backend::ALL.into_iter().find(|b| b.as_str() == s).ok_or_else(|| format!("unknown backend {s:?}"))
    }
}

/// The backend the worker's models actually run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActiveBackend {
    #[serde(rename = "WebGPU")]
    WebGpu,
    #[serde(rename = "CPU")]
    Cpu,
}

impl ActiveBackend {
    pub fn name(self) -> &'static str {
        match self {
            ActiveBackend::WebGpu => "WebGPU",
            ActiveBackend::Cpu => "CPU",
        }
    }
}

impl fmt::Display for ActiveBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which build of the engine a worker loads (see [`crate::gpu`]): `mien-web`, the page's own
/// module, which runs on the CPU only, or `mien-gpu`, which adds WebGPU and is downloaded only
/// when it is to be used or timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Cpu,
    WebGpu,
}

/// What *Auto* measured in this browser: one test frame's time on each backend, and the backend
/// it chose. The page keeps it (see [`crate::bridge`]) until the browser, its WebGPU adapter or
/// the app changes, so the measuring is done once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AutoChoice {
    pub chosen: ActiveBackend,
    /// Milliseconds for the test frame (detection and one face's classification) on the CPU.
    pub cpu_ms: f64,
    /// The same on WebGPU; `None` when it did not finish within [`AUTO_WEBGPU_BUDGET_MS`].
    pub webgpu_ms: Option<f64>,
    /// The WebGPU adapter measured (vendor, architecture, device, description).
    pub adapter: String,
    /// The adapter is a software renderer: WebGPU was not timed (and its engine not downloaded).
    #[serde(default)]
    pub software: bool,
}

/// How long *Auto* gives WebGPU to start and run its test frame twice (the first run compiles
/// the shaders): a software renderer takes many seconds, and a first visit should not.
pub const AUTO_WEBGPU_BUDGET_MS: i32 = 4000;

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
    /// How the image was decoded: `pixels` (a video frame), `mien` (mien's own decoder),
    /// `browser` (the browser's, whole) or `browser at n/8` (the browser's, at a reduced scale).
    #[serde(default)]
    pub decoded: String,
    /// Milliseconds spent in the MTCNN cascade (or following faces, for a job that follows them).
    pub detect_ms: f64,
    /// Parts of the cascade that the second worker ran (see [`crate::bridge::WorkerPool`]).
    #[serde(default)]
    pub shared_parts: u32,
    /// Milliseconds spent cropping and classifying the faces.
    #[serde(default)]
    pub classify_ms: f64,
    pub backend: ActiveBackend,
    /// When the worker received the job and when it had the answer, in ms since the epoch
    /// (`performance.timeOrigin + performance.now()`): with the page's own times they split a
    /// photo's time into the page's, the messages' and the worker's.
    #[serde(default)]
    pub received_at: f64,
    #[serde(default)]
    pub answered_at: f64,
    /// When the answer's message reached the page (same clock), set by the page.
    #[serde(default)]
    pub arrived_at: f64,
    /// A small JPEG of the photo, made by the worker when it had the browser decode a large
    /// photo: the page shows it instead of the original, which it then never decodes.
    #[serde(skip)]
    pub thumbnail: Option<web_sys::Blob>,
}

/// The answer to one detection job.
pub type Reply = Result<DetectReply, String>;

/// A message from the page to the worker.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Request {
    Init(Init),
    Detect(DetectJob),
    SelfTest,
    /// A part of another worker's detection, over the two workers' own channel (see
    /// [`crate::worker`]'s helper).
    Part(PartJob),
    /// The answer to a [`Request::Part`], back over that channel.
    PartDone(PartDone),
}

/// The tags of [`Request`], read before the rest of a message (see [`Request::from_js`]).
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum RequestKind {
    Init,
    Detect,
    SelfTest,
    Part,
    PartDone,
}

/// Load the models on `backend`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Init {
    pub backend: Backend,
    /// What *Auto* measured on an earlier visit, if anything: it is used again (without
    /// measuring) while the WebGPU adapter is the same.
    #[serde(default)]
    pub auto: Option<AutoChoice>,
    /// The build of the engine to load: `worker.js` imports `mien-gpu` for [`Engine::WebGpu`].
    pub engine: Engine,
    /// The page's compiled `WebAssembly.Module`: for [`Engine::Cpu`] (and when `mien-gpu` fails
    /// to load) `worker.js` instantiates it, so the worker neither downloads nor compiles the
    /// module a second time.
    #[serde(with = "serde_wasm_bindgen::preserve")]
    pub module: JsValue,
    /// Why `mien-gpu` could not be loaded, set by `worker.js` when it fell back to the page's
    /// module.
    #[serde(default)]
    pub engine_error: Option<String>,
}

/// A part of a detection shared with a helper worker ([`mien::detect::shared`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartJob {
    pub id: u32,
    /// The [`mien::detect::shared::Part`], as JSON (its numbers come back bit for bit).
    pub part: String,
    /// The picture the part reads: RGB pixels, row by row.
    pub width: u32,
    pub height: u32,
    #[serde(with = "serde_wasm_bindgen::preserve")]
    pub pixels: ArrayBuffer,
}

/// The answer to the [`PartJob`] numbered `id`: a [`mien::detect::shared::PartResult`] as JSON,
/// or why there is none.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartDone {
    pub id: u32,
    pub result: Result<String, String>,
}

/// Find and classify the faces of one image.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DetectJob {
    /// Chosen by the page; the [`Response::Detected`] carries it back.
    pub id: u32,
    pub image: Image,
    /// Smallest face searched for, in pixels.
    pub min_face: f32,
    /// Smallest face searched for, as a fraction of the image's shorter side (the larger of the
    /// two applies; see [`mien::DetectorConfig::min_face_fraction`]). Photos are also decoded
    /// to the working size it needs.
    pub min_face_fraction: f32,
    /// Search the whole image, or, in a video, follow the faces of an earlier frame (and search
    /// the rest of the frame for new ones): see [`mien::track::Step`].
    #[serde(default = "search_the_whole_image")]
    pub step: Step,
    /// Which views of each face the classifier looks at.
    #[serde(default)]
    pub views: Views,
}

fn search_the_whole_image() -> Step {
    Step::Detect
}

/// An image for the worker, as a transferable buffer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Image {
    /// An image file's bytes (JPEG, PNG, ...), decoded in the worker.
    File(#[serde(with = "serde_wasm_bindgen::preserve")] ArrayBuffer),
    /// A video frame's RGBA pixels, row by row.
    Rgba {
        #[serde(with = "serde_wasm_bindgen::preserve")]
        pixels: ArrayBuffer,
        width: u32,
        height: u32,
    },
}

impl Image {
    pub fn buffer(&self) -> &ArrayBuffer {
        match self {
            Image::File(bytes) => bytes,
            Image::Rgba { pixels, .. } => pixels,
        }
    }
}

impl Request {
    /// The message as a JS object, and the buffers to transfer with it.
    pub fn to_js(&self) -> Result<(JsValue, Array), String> {
        let value = serde_wasm_bindgen::to_value(self).map_err(|e| format!("could not encode a request: {e}"))?;
        let transfer = Array::new();
        match self {
            Request::Detect(job) => {
                transfer.push(job.image.buffer());
            }
            Request::Part(job) => {
                transfer.push(&job.pixels);
            }
            _ => {}
        }
        Ok((value, transfer))
    }

    /// Reads a message the page sent. serde's own internally tagged enums first copy the whole
    /// message into a generic form, which would turn the transferred buffers into byte vectors;
    /// so the `type` is read first and the variant's fields straight from the JS object.
    pub fn from_js(value: JsValue) -> Result<Request, String> {
        #[derive(Deserialize)]
        struct Tag {
            #[serde(rename = "type")]
            kind: RequestKind,
        }
        let Tag { kind } = decode(value.clone())?;
        Ok(match kind {
            RequestKind::Init => Request::Init(decode(value)?),
            RequestKind::Detect => Request::Detect(decode(value)?),
            RequestKind::SelfTest => Request::SelfTest,
            RequestKind::Part => Request::Part(decode(value)?),
            RequestKind::PartDone => Request::PartDone(decode(value)?),
        })
    }
}

/// A message from the worker (or from `worker.js`) to the page.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Response {
    /// The models are loaded and warmed up on `backend`; `note` explains a fallback, if any.
    Ready {
        backend: ActiveBackend,
        #[serde(default)]
        note: String,
        /// How *Auto* chose, measured now or on an earlier visit.
        #[serde(default)]
        auto: Option<AutoChoice>,
    },
    /// The worker could not start (weights missing, the module failed to load, ...).
    Fatal { error: String },
    /// A WebGPU device of the worker was lost (sent by `worker.js`).
    GpuLost {
        #[serde(default)]
        reason: String,
        #[serde(default)]
        message: String,
    },
    /// The answer to the [`DetectJob`] numbered `id`, with the photo's thumbnail, if any (a JS
    /// `Blob`, else `undefined`; see [`DetectReply::thumbnail`]).
    Detected {
        id: u32,
        reply: Reply,
        #[serde(default, with = "serde_wasm_bindgen::preserve")]
        thumbnail: JsValue,
    },
    /// The networks' largest deviations from the reference outputs on this backend.
    #[serde(rename = "selftest")]
    SelfTest { result: Result<SelfTest, String> },
}

impl Response {
    pub fn to_js(&self) -> Result<JsValue, String> {
        serde_wasm_bindgen::to_value(self).map_err(|e| format!("could not encode a response: {e}"))
    }

    /// Reads a message from the worker. As in [`Request::from_js`], `Detected` is read straight
    /// from the JS object, so its thumbnail stays a `Blob`.
    pub fn from_js(value: JsValue) -> Result<Response, String> {
        #[derive(Deserialize)]
        struct Tag {
            #[serde(rename = "type")]
            kind: String,
        }
        #[derive(Deserialize)]
        struct Detected {
            id: u32,
            reply: Reply,
            #[serde(default, with = "serde_wasm_bindgen::preserve")]
            thumbnail: JsValue,
        }
        let Tag { kind } = decode(value.clone())?;
        if kind == "detected" {
            let Detected { id, reply, thumbnail } = decode(value)?;
            return Ok(Response::Detected { id, reply, thumbnail });
        }
        decode(value)
    }
}

fn decode<T: DeserializeOwned>(value: JsValue) -> Result<T, String> {
    serde_wasm_bindgen::from_value(value).map_err(|e| format!("unreadable message: {e}"))
}
