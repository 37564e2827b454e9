//! The inference worker: the only place in the browser that holds models and runs tensor ops.
//!
//! `worker.js` loads the same wasm module as the page and forwards every message to
//! [`worker_handle`]; the messages are [`crate::protocol`]'s.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

use js_sys::{Reflect, Uint8Array};
use mien::burn::prelude::Device;
use mien::track::Step;
use mien::{DetectorConfig, ExpressionClassifier, FaceDetector, FaceExpression, Frame, MtcnnWeights, Photo};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Blob, DedicatedWorkerGlobalScope, Response as FetchResponse};

use crate::gpu::{webgpu_adapter, Adapter};
use crate::protocol::{
    ActiveBackend, AutoChoice, Backend, DetectJob, DetectReply, Image, Init, PartDone, PartJob, Request, Response,
    AUTO_WEBGPU_BUDGET_MS,
};

struct State {
    detector: FaceDetector,
    /// `None` when the expression model could not be loaded: faces are still found.
    classifier: Option<ExpressionClassifier>,
    backend: ActiveBackend,
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

/// Milliseconds since the epoch, on the clock the page's [`crate::photos`] timeline uses.
fn epoch_ms() -> f64 {
    scope().performance().map(|p| p.time_origin() + p.now()).unwrap_or_else(js_sys::Date::now)
}

fn post(response: &Response) {
    let sent = response.to_js().map_err(JsValue::from).and_then(|msg| scope().post_message(&msg));
    if let Err(e) = sent {
        web_sys::console::error_2(&"mien worker: postMessage failed".into(), &e);
    }
}

/// Entry point for every message the page sends (called by `worker.js`).
#[wasm_bindgen]
pub fn worker_handle(msg: JsValue) {
    let request = match Request::from_js(msg) {
        Ok(r) => r,
        Err(e) => {
            web_sys::console::warn_1(&format!("mien worker: a message was ignored ({e})").into());
            return;
        }
    };
    wasm_bindgen_futures::spawn_local(async move {
        match request {
            Request::Init(init) => match start(init).await {
                Ok((state, note, auto)) => {
                    let backend = state.backend;
                    STATE.with(|s| *s.borrow_mut() = Some(Rc::new(state)));
                    post(&Response::Ready { backend, note, auto });
                }
                Err(error) => post(&Response::Fatal { error }),
            },
            Request::Detect(job) => {
                let id = job.id;
                let received_at = epoch_ms();
                let mut reply = detect(job).await;
                if let Ok(r) = reply.as_mut() {
                    (r.received_at, r.answered_at) = (received_at, epoch_ms());
                }
                let thumbnail = reply.as_mut().ok().and_then(|r| r.thumbnail.take()).map(JsValue::from);
                post(&Response::Detected { id, reply, thumbnail: thumbnail.unwrap_or(JsValue::UNDEFINED) });
            }
            Request::SelfTest => post(&Response::SelfTest { result: selftest().await }),
            Request::Part(job) => {
                let id = job.id;
                let result = run_part(job).await;
                post_to_peer(&Request::PartDone(PartDone { id, result }), true);
            }
            Request::PartDone(done) => {
                let resolve = PARTS.with(|p| p.borrow_mut().waiting.remove(&done.id));
                if let Some(resolve) = resolve {
                    let answer = serde_wasm_bindgen::to_value(&done.result).unwrap_or(JsValue::NULL);
                    let _ = resolve.call1(&JsValue::NULL, &answer);
                }
            }
        }
    });
}

/// The parts of this worker's detections that its peer runs (see [`PeerHelper`]).
#[derive(Default)]
struct Parts {
    next_id: u32,
    /// Each waiting part's promise's `resolve`.
    waiting: std::collections::HashMap<u32, js_sys::Function>,
    /// The peer missed an answer: it is not asked again.
    gone: bool,
    /// Parts the peer answered.
    answered: u32,
}

thread_local! {
    static PARTS: RefCell<Parts> = RefCell::new(Parts::default());
}

/// How long a part may take at the peer before it is run here instead (and the peer is asked no
/// more): a part takes tens of milliseconds, so only a peer that crashed or hangs misses this.
const PEER_PART_BUDGET_MS: i32 = 3000;

/// Sends `request` over the channel to the peer worker (`worker.js`'s `mienPeerPost`); `answer`
/// sends it even before the peer said hello. `false` when there is no peer to send to.
fn post_to_peer(request: &Request, answer: bool) -> bool {
    let Ok(post) = Reflect::get(&scope(), &"mienPeerPost".into()).and_then(|f| f.dyn_into::<js_sys::Function>()) else {
        return false;
    };
    let Ok((msg, transfer)) = request.to_js() else { return false };
    post.call3(&scope(), &msg, &transfer, &answer.into()).map(|sent| sent.is_truthy()).unwrap_or(false)
}

/// The peer worker, as the helper of a shared detection ([`mien::detect::shared`]): where the
/// page runs two workers for one (two cores, one worker for jobs), the second runs half of each
/// stage of a photo's cascade while this one runs the other half.
struct PeerHelper;

impl PeerHelper {
    /// The peer, if the page introduced one, it has said hello, and it has not missed an answer.
    fn available() -> Option<PeerHelper> {
        let gone = PARTS.with(|p| p.borrow().gone);
        let ready = Reflect::get(&scope(), &"mienPeerReady".into())
            .and_then(|f| f.dyn_into::<js_sys::Function>())
            .and_then(|f| f.call0(&scope()))
            .map(|r| r.is_truthy())
            .unwrap_or(false);
        (!gone && ready).then_some(PeerHelper)
    }
}

impl mien::detect::shared::Helper for PeerHelper {
    type Pending =
        std::pin::Pin<Box<dyn Future<Output = Result<mien::detect::shared::PartResult, mien::detect::DetectError>>>>;

    fn start(&self, working: &Frame, part: mien::detect::shared::Part) -> Self::Pending {
        use mien::detect::DetectError;
        let id = PARTS.with(|p| {
            let mut p = p.borrow_mut();
            p.next_id = p.next_id.wrapping_add(1);
            p.next_id
        });
        let pixels = Uint8Array::from(working.rgb()).buffer();
        let job = match serde_json::to_string(&part) {
            Ok(part) => PartJob { id, part, width: working.width(), height: working.height(), pixels },
            Err(e) => return Box::pin(std::future::ready(Err(DetectError::Helper(e.to_string())))),
        };
        let mut resolve_fn = None;
        let promise = js_sys::Promise::new(&mut |resolve, _| resolve_fn = Some(resolve));
        if let Some(resolve) = resolve_fn {
            PARTS.with(|p| p.borrow_mut().waiting.insert(id, resolve));
        }
        if !post_to_peer(&Request::Part(job), false) {
            PARTS.with(|p| p.borrow_mut().waiting.remove(&id));
            return Box::pin(std::future::ready(Err(DetectError::Helper("no peer".into()))));
        }
        Box::pin(async move {
            let Some(answer) = within(PEER_PART_BUDGET_MS, JsFuture::from(promise)).await else {
                PARTS.with(|p| {
                    let mut p = p.borrow_mut();
                    p.waiting.remove(&id);
                    p.gone = true;
                });
                web_sys::console::warn_1(
                    &"mien: the second worker stopped answering; each photo now runs on one".into(),
                );
                return Err(DetectError::Helper("no answer in time".into()));
            };
            let result: Result<String, String> = answer
                .ok()
                .and_then(|a| serde_wasm_bindgen::from_value(a).ok())
                .unwrap_or_else(|| Err("an unreadable answer".into()));
            let result = result
                .and_then(|json| serde_json::from_str(&json).map_err(|e| e.to_string()))
                .map_err(DetectError::Helper);
            if result.is_ok() {
                PARTS.with(|p| p.borrow_mut().answered += 1);
            }
            result
        })
    }
}

/// Runs a part of the peer's detection (see [`PeerHelper`]).
async fn run_part(job: PartJob) -> Result<String, String> {
    let state = STATE.with(|s| s.borrow().clone()).ok_or_else(|| "still loading".to_string())?;
    let part: mien::detect::shared::Part = serde_json::from_str(&job.part).map_err(|e| e.to_string())?;
    let frame =
        Frame::from_rgb(job.width, job.height, Uint8Array::new(&job.pixels).to_vec()).map_err(|e| e.to_string())?;
    let result = state.detector.run_part(&frame, &part).await.map_err(|e| e.to_string())?;
    serde_json::to_string(&result).map_err(|e| e.to_string())
}

/// The models on one device.
struct Models {
    detector: FaceDetector,
    classifier: Option<ExpressionClassifier>,
    /// Why the classifier is missing, if it is.
    missing: Option<String>,
}

/// The files the models are made from, fetched once.
struct ModelFiles {
    mtcnn: MtcnnWeights,
    /// The detector's second opinion ([`mien::detect::SECOND_OPINION_FILE`]), or why it could
    /// not be fetched: without it the detector only skips its close look.
    second_opinion: Result<Vec<u8>, String>,
    /// The expression model's manifest and weights, or why they could not be fetched.
    classifier: Result<(Vec<u8>, Vec<u8>), String>,
}

impl ModelFiles {
    async fn fetch() -> Result<ModelFiles, String> {
        let mtcnn = fetch_weights("./assets/mtcnn").await?;
        let second_opinion = fetch_bytes(&format!("./assets/mtcnn/{}", mien::detect::SECOND_OPINION_FILE)).await;
        let classifier = match fetch_bytes("./assets/model/manifest.json").await {
            Ok(manifest) => fetch_bytes("./assets/model/classifier.safetensors").await.map(|w| (manifest, w)),
            Err(e) => Err(e),
        };
        Ok(ModelFiles { mtcnn, second_opinion, classifier })
    }

    /// Builds the models on `device` and runs the test frame once: the first run compiles a
    /// WebGPU backend's shaders and sizes its buffers, so the user's first photo (or camera
    /// frame) is not the slow one.
    async fn load(&self, device: &Device) -> Result<Models, String> {
        let detector = FaceDetector::new(&self.mtcnn, DetectorConfig::default(), device).map_err(|e| e.to_string())?;
        // A face that fills the picture and that the cascade misses is then missed; every other
        // face is still found, so the app goes on, saying why in the console.
        let detector = match self
            .second_opinion
            .as_deref()
            .map_err(|e| e.clone())
            .and_then(|bytes| detector.clone().with_second_opinion(bytes).map_err(|e| e.to_string()))
        {
            Ok(d) => d,
            Err(e) => {
                web_sys::console::warn_1(&format!("the face detector runs without its close look: {e}").into());
                detector
            }
        };
        let classifier = match &self.classifier {
            Ok((manifest, weights)) => ExpressionClassifier::load(manifest, weights, device).map_err(|e| e.to_string()),
            Err(e) => Err(e.clone()),
        };
        let (classifier, missing) = match classifier {
            Ok(c) => (Some(c), None),
            Err(e) => (None, Some(e)),
        };
        let models = Models { detector, classifier, missing };
        models.test_frame().await?;
        Ok(models)
    }
}

impl Models {
    /// Runs the test frame (the cascade on a 320×240 frame and one face's classification) and
    /// returns its time in milliseconds.
    async fn test_frame(&self) -> Result<f64, String> {
        let (w, h) = (320u32, 240u32);
        // A fixed texture, so the cascade has candidates to look at.
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| ((i / 3 % w) * 7 + (i / 3 / w) * 13 + (i % 3) * 31) as u8).collect();
        let frame = Frame::from_rgb(w, h, rgb).map_err(|e| e.to_string())?;
        let mut config = self.detector.config().clone();
        config.min_face_size = 48.0;
        let t0 = now();
        self.detector.detect_with(&frame, &config).await.map_err(|e| e.to_string())?;
        if let Some(c) = &self.classifier {
            let size = c.manifest().input_size;
            let crop = mien::FaceCrop { size, pixels: (0..size * size).map(|i| (i * 5 % 256) as u8).collect() };
            c.classify_async(&[&crop]).await.map_err(|e| e.to_string())?;
        }
        Ok(now() - t0)
    }
}

/// Picks the backend, fetches the weights and warms the networks up. `init.auto` is what *Auto*
/// measured on an earlier visit, if anything.
async fn start(init: Init) -> Result<(State, String, Option<AutoChoice>), String> {
    let Init { backend: wanted, auto: cached, engine_error, .. } = init;
    let files = ModelFiles::fetch().await?;
    let mut auto = None;
    let (models, backend, mut note) = match (wanted, engine_error) {
        (Backend::Cpu, _) => (files.load(&Device::flex()).await?, ActiveBackend::Cpu, String::new()),
        (_, Some(why)) => (
            files.load(&Device::flex()).await?,
            ActiveBackend::Cpu,
            format!("The WebGPU build of the engine could not be loaded ({why}); running on the CPU: reload the page to try again"),
        ),
        (Backend::WebGpu, None) => match webgpu_device().await {
            Ok(device) => (files.load(&device).await?, ActiveBackend::WebGpu, String::new()),
            Err(e) => (
                files.load(&Device::flex()).await?,
                ActiveBackend::Cpu,
                format!("WebGPU was requested but is not available ({e}); using the CPU backend"),
            ),
        },
        (Backend::Auto, None) => match webgpu_adapter().await {
            None => (
                files.load(&Device::flex()).await?,
                ActiveBackend::Cpu,
                "this browser offers no WebGPU adapter; using the CPU backend".to_string(),
            ),
            Some(adapter) => {
                let (models, choice, note) = choose_by_measuring(&files, adapter, cached).await?;
                let backend = choice.chosen;
                auto = Some(choice);
                (models, backend, note)
            }
        },
    };
    if let Some(why) = &models.missing {
        if !note.is_empty() {
            note.push_str("; ");
        }
        note.push_str(&format!("the expression model could not be loaded ({why}): faces are found but not classified"));
    }
    let state = State { detector: models.detector, classifier: models.classifier, backend };
    Ok((state, note, auto))
}

/// *Auto*: the models on the faster of the CPU and WebGPU, by the time of a test frame on each
/// (the second run, after the one that compiles WebGPU's shaders), or as measured on an earlier
/// visit with the same adapter.
async fn choose_by_measuring(
    files: &ModelFiles,
    adapter: Adapter,
    cached: Option<AutoChoice>,
) -> Result<(Models, AutoChoice, String), String> {
    let describe = |c: &AutoChoice, when: &str| {
        if c.software {
            return format!(
                "Auto timed a test frame {when}: CPU {:.0} ms; WebGPU not timed, since {} is a software \
                 renderer (many times slower than the CPU path); using the {}",
                c.cpu_ms, c.adapter, c.chosen
            );
        }
        let gpu = c
            .webgpu_ms
            .map_or(format!("over {:.0} s", AUTO_WEBGPU_BUDGET_MS as f64 / 1000.0), |ms| format!("{ms:.0} ms"));
        format!(
            "Auto timed a test frame {when}: CPU {:.0} ms, WebGPU {gpu} on {}; using the {}",
            c.cpu_ms, c.adapter, c.chosen
        )
    };
    // The earlier choice, unless it was WebGPU and WebGPU no longer starts: then measure again.
    if let Some(c) = cached.filter(|c| c.adapter == adapter.name) {
        let device = match c.chosen {
            ActiveBackend::Cpu => Some(Device::flex()),
            ActiveBackend::WebGpu => webgpu_device().await.ok(),
        };
        if let Some(device) = device {
            return Ok((files.load(&device).await?, c.clone(), describe(&c, "on an earlier visit")));
        }
    }
    let cpu = files.load(&Device::flex()).await?;
    let cpu_ms = cpu.test_frame().await?;
    if adapter.software {
        let choice =
            AutoChoice { chosen: ActiveBackend::Cpu, cpu_ms, webgpu_ms: None, adapter: adapter.name, software: true };
        let note = describe(&choice, "in this browser");
        return Ok((cpu, choice, note));
    }
    let gpu = within(AUTO_WEBGPU_BUDGET_MS, async {
        let device = webgpu_device().await?;
        let models = files.load(&device).await?;
        let ms = models.test_frame().await?;
        Ok::<_, String>((models, ms))
    })
    .await;
    let (gpu, webgpu_ms) = match gpu {
        Some(Ok((models, ms))) => (Some(models), Some(ms)),
        Some(Err(e)) => {
            web_sys::console::warn_1(&format!("mien: WebGPU could not run the test frame ({e})").into());
            (None, None)
        }
        None => (None, None),
    };
    let (models, chosen) = match (gpu, webgpu_ms) {
        (Some(gpu), Some(ms)) if ms < cpu_ms => (gpu, ActiveBackend::WebGpu),
        _ => (cpu, ActiveBackend::Cpu),
    };
    let choice = AutoChoice { chosen, cpu_ms, webgpu_ms, adapter: adapter.name, software: false };
    let note = describe(&choice, "in this browser");
    Ok((models, choice, note))
}

/// A WebGPU device: in the `mien-gpu` build; the `mien-web` build runs on the CPU only.
#[cfg(feature = "webgpu")]
async fn webgpu_device() -> Result<Device, String> {
    Device::wgpu_options().init_async().await.map_err(|e| e.to_string())
}

#[cfg(not(feature = "webgpu"))]
async fn webgpu_device() -> Result<Device, String> {
    Err(match webgpu_adapter().await {
        None => "this browser offers no WebGPU adapter".into(),
        Some(_) => "the WebGPU build of the engine, mien-gpu, is not loaded".into(),
    })
}

/// `future`'s output, or `None` when it takes longer than `ms` milliseconds (it is then dropped
/// at its next await).
async fn within<T>(ms: i32, future: impl Future<Output = T>) -> Option<T> {
    let timer = JsFuture::from(js_sys::Promise::new(&mut |resolve, _| {
        let _ = scope().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    }));
    let mut future = std::pin::pin!(future);
    let mut timer = std::pin::pin!(timer);
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(v) = future.as_mut().poll(cx) {
            return std::task::Poll::Ready(Some(v));
        }
        timer.as_mut().poll(cx).map(|_| None)
    })
    .await
}

async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    let resp =
        JsFuture::from(scope().fetch_with_str(url)).await.map_err(|e| format!("could not fetch {url}: {e:?}"))?;
    let resp: FetchResponse = resp.unchecked_into();
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

async fn detect(job: DetectJob) -> Result<DetectReply, String> {
    let state = STATE
        .with(|s| s.borrow().clone())
        .ok_or_else(|| "the detector is still loading; try again in a moment".to_string())?;
    let t0 = now();
    let mut config = state.detector.config().clone();
    config.min_face_size = job.min_face;
    config.min_face_fraction = job.min_face_fraction;
    config.validate().map_err(|e| e.to_string())?;
    let (photo, thumbnail, decoded) = match &job.image {
        Image::Rgba { pixels, width, height } => (
            Photo::whole(
                Frame::from_rgba(*width, *height, &Uint8Array::new(pixels).to_vec()).map_err(|e| e.to_string())?,
            ),
            None,
            "pixels".to_string(),
        ),
        Image::File(bytes) => decode_photo(bytes, Some(config.photo_short_side())).await?,
    };
    let t1 = now();
    // A photo's search is shared with the peer worker where there is one; a video frame's is not
    // (the live page's frames are small, and its searches already meet their budget).
    let helper = match job.image {
        Image::File(_) => PeerHelper::available(),
        Image::Rgba { .. } => None,
    };
    let answered_before = PARTS.with(|p| p.borrow().answered);
    let faces = match &job.step {
        Step::Detect => state.detector.detect_sharing(&photo.frame, &config, helper.as_ref()).await,
        Step::DetectUpright => {
            let upright = mien::DetectorConfig { turned_look: None, close_look: None, ..config.clone() };
            state.detector.detect_with(&photo.frame, &upright).await
        }
        Step::Follow(priors) => state.detector.follow_with(&photo.frame, priors, &config).await,
        Step::Refresh(priors) => state.detector.refresh_with(&photo.frame, priors, &config).await,
    }
    .map_err(|e| e.to_string())?;
    let t2 = now();
    let shared_parts = PARTS.with(|p| p.borrow().answered) - answered_before;
    let (faces, labels) = match &state.classifier {
        Some(c) => {
            let faces = mien::pipeline::classify_faces_with(c, &photo.frame, faces, job.views)
                .await
                .map_err(|e| e.to_string())?;
            (faces, c.manifest().labels.clone())
        }
        None => {
            (faces.into_iter().map(|face| FaceExpression { face, probabilities: Vec::new() }).collect(), Vec::new())
        }
    };
    let t3 = now();
    let thumbnail = match thumbnail {
        Some(t) => t.done().await,
        None => None,
    };
    // Reported in the photo's own pixels (the working frame may be smaller), as
    // `mien::pipeline::analyze_photo` does; the stages are called one by one here to time each.
    let faces = mien::pipeline::in_photo_pixels(&photo, faces);
    Ok(DetectReply {
        width: photo.width,
        height: photo.height,
        faces,
        labels,
        decode_ms: t1 - t0,
        decoded,
        detect_ms: t2 - t1,
        shared_parts,
        classify_ms: t3 - t2,
        backend: state.backend,
        received_at: 0.0,
        answered_at: 0.0,
        arrived_at: 0.0,
        thumbnail,
    })
}

/// Decodes a photo file to its working frame (shorter side at most `max_short_side`).
///
/// A larger photo, or one whose size mien cannot read from its header, is decoded and scaled by
/// the browser, so the wasm heap holds only the working frame, never a 100-megapixel buffer,
/// and every format the browser reads (AVIF, HEIC on Safari) works. A JPEG is decoded at a
/// reduced scale where the browser can (WebCodecs' `ImageDecoder`: libjpeg-turbo skips most of
/// the work of the pixels it would throw away), else whole (`createImageBitmap`); the EXIF
/// orientation is applied either way. Where the browser cannot decode, mien's own decoder
/// tries, and its message says what is wrong with the file.
///
/// A photo the browser decoded also comes with a thumbnail (see [`DetectReply::thumbnail`]);
/// the text says how it was decoded (see [`DetectReply::decoded`]).
async fn decode_photo(
    bytes: &js_sys::ArrayBuffer,
    max_short_side: Option<u32>,
) -> Result<(Photo, Option<Thumbnail>, String), String> {
    let mien_decode = |bytes: &js_sys::ArrayBuffer| {
        Frame::decode_photo(&Uint8Array::new(bytes).to_vec(), max_short_side)
            .map(|p| (p, None, "mien".to_string()))
            .map_err(|e| e.to_string())
    };
    let len = bytes.byte_length();
    if len == 0 {
        return Err(mien::FrameError::Empty.to_string());
    }
    let head = Uint8Array::new_with_byte_offset_and_length(bytes, 0, len.min(1 << 16)).to_vec();
    let tail_start = len.saturating_sub(1 << 16);
    let tail = Uint8Array::new_with_byte_offset_and_length(bytes, tail_start, len - tail_start).to_vec();
    if !mien::frame::ends_complete(&head, &tail) {
        return Err(mien::FrameError::Corrupt("the file stops before its end".into()).to_string());
    }
    // A header claiming a giant is refused before anything is decoded, and a photo already
    // within the working size is decoded here by mien's own decoder, exactly as natively.
    if let Some((width, height)) = mien::frame::header_dimensions(&head) {
        let max = mien::frame::MAX_DIMENSION;
        if width > max || height > max {
            return Err(mien::FrameError::TooLarge { width, height, max }.to_string());
        }
        if max_short_side.is_none_or(|side| width.min(height) <= side) {
            return mien_decode(bytes);
        }
    }
    if let (Some(side), Some(upright)) = (max_short_side, mien::frame::upright_dimensions(&head)) {
        if head.starts_with(&[0xFF, 0xD8]) {
            if let Ok(decoded) = scaled_jpeg_decode(bytes, &head, upright, side).await {
                return Ok(decoded);
            }
        }
    }
    match browser_decode(bytes, max_short_side).await {
        Ok((photo, thumbnail)) => Ok((photo, Some(thumbnail), "browser".to_string())),
        Err(_) => mien_decode(bytes),
    }
}

/// The longer side of a photo's thumbnail: a card's width on a high-density screen.
const THUMBNAIL_SIDE: u32 = 960;

/// A JPEG decoded by WebCodecs' `ImageDecoder` at the smallest of libjpeg-turbo's scales (n/8)
/// whose shorter side still reaches `short_side`, then scaled to the working size. `upright`
/// is the photo's size as viewed; a browser whose frame is not that shape (one that ignores
/// the EXIF orientation) or that decoded too small is refused, so the caller decodes whole.
async fn scaled_jpeg_decode(
    bytes: &js_sys::ArrayBuffer,
    head: &[u8],
    (width, height): (u32, u32),
    short_side: u32,
) -> Result<(Photo, Option<Thumbnail>, String), JsValue> {
    let constructor: js_sys::Function = Reflect::get(&js_sys::global(), &"ImageDecoder".into())?.dyn_into()?;
    let (fw, fh) = mien::frame::bounded_size(width, height, Some(short_side));
    // The decoder takes the size in the file's own orientation, and gives the largest of its
    // scales that fits in it.
    let (sw, sh) = mien::frame::header_dimensions(head).ok_or("no size in the header")?;
    let eighths = (8 * fw.min(fh) as u64).div_ceil(width.min(height) as u64).clamp(1, 8);
    let scaled = |v: u32| (v as u64 * eighths).div_ceil(8) as u32;
    let init = js_sys::Object::new();
    Reflect::set(&init, &"type".into(), &"image/jpeg".into())?;
    Reflect::set(&init, &"data".into(), bytes)?;
    Reflect::set(&init, &"desiredWidth".into(), &scaled(sw).into())?;
    Reflect::set(&init, &"desiredHeight".into(), &scaled(sh).into())?;
    // As mien's own decoder reads pixels: no colour-profile conversion.
    Reflect::set(&init, &"colorSpaceConversion".into(), &"none".into())?;
    let decoder = Reflect::construct(&constructor, &js_sys::Array::of1(&init))?;
    let decoded = call_async(&decoder, "decode").await;
    call(&decoder, "close", &[])?;
    let frame = Reflect::get(&decoded?, &"image".into())?;
    // Drawn through an ImageBitmap: a VideoFrame drawn straight onto a canvas keeps its pixels
    // alive after `close()` until a garbage collection, which let 60 photos hold half a gigabyte.
    let bitmap = JsFuture::from(call(&scope(), "createImageBitmap", &[&frame])?.dyn_into::<js_sys::Promise>()?).await;
    call(&frame, "close", &[])?;
    let bitmap: web_sys::ImageBitmap = bitmap?.dyn_into()?;
    let (dw, dh) = (bitmap.width(), bitmap.height());
    // Upright (its aspect within a pixel of the photo's) and at least the working size.
    let upright = (dw as u64 * height as u64).abs_diff(dh as u64 * width as u64) <= width.max(height) as u64;
    let result = if upright && dw >= fw && dh >= fh {
        working_frame(&bitmap, (width, height), (fw, fh)).map(|(photo, thumbnail)| {
            (photo, Some(thumbnail), format!("browser at {:.0}/8", 8.0 * dw as f64 / width as f64))
        })
    } else {
        Err(JsValue::from_str("the decoded frame is not the photo's upright shape"))
    };
    bitmap.close();
    result
}

/// Calls `object.name(args…)`.
fn call(object: &JsValue, name: &str, args: &[&JsValue]) -> Result<JsValue, JsValue> {
    let f: js_sys::Function = Reflect::get(object, &name.into())?.dyn_into()?;
    Reflect::apply(&f, object, &args.iter().copied().collect::<js_sys::Array>())
}

/// Calls `object.name()` and awaits the promise it returns.
async fn call_async(object: &JsValue, name: &str) -> Result<JsValue, JsValue> {
    JsFuture::from(call(object, name, &[])?.dyn_into::<js_sys::Promise>()?).await
}

/// The working frame (`fw × fh`) of a photo of `width × height`, drawn from `source` (an
/// upright `ImageBitmap` of any size), and its thumbnail.
fn working_frame(
    source: &web_sys::ImageBitmap,
    (width, height): (u32, u32),
    (fw, fh): (u32, u32),
) -> Result<(Photo, Thumbnail), JsValue> {
    use web_sys::{ImageEncodeOptions, OffscreenCanvas, OffscreenCanvasRenderingContext2d};
    let draw = |w: u32, h: u32| -> Result<OffscreenCanvasRenderingContext2d, JsValue> {
        let canvas = OffscreenCanvas::new(w, h)?;
        let context: OffscreenCanvasRenderingContext2d =
            canvas.get_context("2d")?.ok_or_else(|| JsValue::from_str("no 2D context"))?.dyn_into()?;
        Reflect::set(&context, &"imageSmoothingQuality".into(), &"high".into())?;
        context.draw_image_with_image_bitmap_and_dw_and_dh(source, 0.0, 0.0, w as f64, h as f64)?;
        Ok(context)
    };
    let rgba = draw(fw, fh)?.get_image_data(0.0, 0.0, fw as f64, fh as f64)?.data();
    let frame = Frame::from_rgba(fw, fh, &rgba.0).map_err(|e| JsValue::from_str(&e.to_string()))?;
    drop(rgba);
    // The thumbnail: a JPEG of a few tens of kilobytes.
    let k = (THUMBNAIL_SIDE as f64 / fw.max(fh) as f64).min(1.0);
    let (tw, th) = (((fw as f64 * k).round() as u32).max(1), ((fh as f64 * k).round() as u32).max(1));
    let thumb = draw(tw, th)?.canvas();
    let encode = ImageEncodeOptions::new();
    encode.set_type("image/jpeg");
    encode.set_quality(0.85);
    // Encoded while the cascade runs; awaited with the answer.
    let thumbnail = Thumbnail(JsFuture::from(thumb.convert_to_blob_with_options(&encode)?));
    Ok((Photo { frame, width, height }, thumbnail))
}

/// A thumbnail being encoded (see [`DetectReply::thumbnail`]).
struct Thumbnail(JsFuture);

impl Thumbnail {
    /// The JPEG, or `None` when the browser could not encode it (the page then shows the original).
    async fn done(self) -> Option<Blob> {
        self.0.await.ok().and_then(|b| b.dyn_into().ok())
    }
}

/// A photo decoded whole by the browser (`createImageBitmap`), then scaled to the working size.
async fn browser_decode(
    bytes: &js_sys::ArrayBuffer,
    max_short_side: Option<u32>,
) -> Result<(Photo, Thumbnail), JsValue> {
    use web_sys::{
        ColorSpaceConversion, ImageBitmap, ImageBitmapOptions, ImageOrientation, PremultiplyAlpha, ResizeQuality,
    };
    let blob = Blob::new_with_buffer_source_sequence(&js_sys::Array::of1(bytes))?;
    let options = ImageBitmapOptions::new();
    options.set_image_orientation(ImageOrientation::FromImage);
    // As mien's own decoder reads pixels: no colour-profile conversion, alpha not premultiplied.
    options.set_color_space_conversion(ColorSpaceConversion::None);
    options.set_premultiply_alpha(PremultiplyAlpha::None);
    let full: ImageBitmap =
        JsFuture::from(scope().create_image_bitmap_with_blob_and_image_bitmap_options(&blob, &options)?)
            .await?
            .dyn_into()?;
    let (width, height) = (full.width(), full.height());
    let max = mien::frame::MAX_DIMENSION;
    if width > max || height > max {
        full.close();
        return Err(JsValue::from_str(&mien::FrameError::TooLarge { width, height, max }.to_string()));
    }
    let (fw, fh) = mien::frame::bounded_size(width, height, max_short_side);
    let bitmap = if (fw, fh) == (width, height) {
        full
    } else {
        options.set_resize_width(fw);
        options.set_resize_height(fh);
        options.set_resize_quality(ResizeQuality::High);
        let small =
            JsFuture::from(scope().create_image_bitmap_with_image_bitmap_and_image_bitmap_options(&full, &options)?)
                .await;
        full.close();
        small?.dyn_into()?
    };
    let result = working_frame(&bitmap, (width, height), (fw, fh));
    bitmap.close();
    result
}
