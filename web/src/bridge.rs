//! The page's side of the inference worker: spawning it, queueing jobs until it is ready,
//! transferring pixels without copies, and routing each reply to the callback of its job.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use mien::detect::selftest::SelfTest;
use mien::track::Step;
use mien::Views;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{ErrorEvent, MessageEvent, Worker, WorkerOptions, WorkerType};
use yew::Callback;

use crate::protocol::{
    ActiveBackend, AutoChoice, Backend, DetectJob, DetectReply, Image, Init, Reply, Request, Response,
};

/// Something the worker said (or did), other than job answers.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerEvent {
    /// Models loaded and warmed up on `backend`; `note` explains a fallback, if any, and `auto`
    /// how *Auto* chose.
    Ready { backend: ActiveBackend, note: String, auto: Option<AutoChoice> },
    /// The worker could not start (weights missing, ...).
    Fatal(String),
    /// The self-test's result, or why it could not run.
    SelfTest(Result<SelfTest, String>),
    /// The worker died (an uncaught error); its pending jobs were answered with an error.
    Crashed(String),
    /// The worker's WebGPU device was lost (why).
    GpuLost(String),
}

struct Inner {
    ready: bool,
    queue: Vec<Request>,
    pending: HashMap<u32, Callback<Reply>>,
    next_id: u32,
}

/// A running inference worker. Dropping it terminates the worker.
pub struct InferenceWorker {
    worker: Worker,
    inner: Rc<RefCell<Inner>>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(ErrorEvent)>,
}

impl InferenceWorker {
    /// Starts `worker.js` (which loads this same wasm module, or its WebGPU build) and asks it
    /// to load the models on `backend`.
    pub fn spawn(backend: Backend, on_event: Callback<WorkerEvent>) -> Result<Self, String> {
        let options = WorkerOptions::new();
        options.set_type(WorkerType::Module);
        let worker = Worker::new_with_options("./worker.js", &options)
            .map_err(|e| format!("this browser cannot start the inference worker: {e:?}"))?;
        let inner =
            Rc::new(RefCell::new(Inner { ready: false, queue: Vec::new(), pending: HashMap::new(), next_id: 0 }));

        let on_message = {
            let inner = inner.clone();
            let worker = worker.clone();
            let on_event = on_event.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
                let arrived_at = epoch_ms();
                let response = match Response::from_js(ev.data()) {
                    Ok(r) => r,
                    Err(e) => {
                        web_sys::console::warn_1(&format!("mien: a message from the worker was ignored ({e})").into());
                        return;
                    }
                };
                match response {
                    Response::Ready { backend, note, auto } => {
                        if let Some(choice) = &auto {
                            remember_auto_choice(choice);
                        }
                        let queued = {
                            let mut inner = inner.borrow_mut();
                            inner.ready = true;
                            std::mem::take(&mut inner.queue)
                        };
                        for request in &queued {
                            post(&worker, request);
                        }
                        on_event.emit(WorkerEvent::Ready { backend, note, auto });
                    }
                    Response::GpuLost { reason, message } => {
                        let why = if message.trim().is_empty() { reason } else { message };
                        on_event.emit(WorkerEvent::GpuLost(why.trim().trim_end_matches('.').to_string()))
                    }
                    Response::Fatal { error } => on_event.emit(WorkerEvent::Fatal(error)),
                    Response::Detected { id, reply, thumbnail } => {
                        let done = inner.borrow_mut().pending.remove(&id);
                        if let Some(done) = done {
                            let thumbnail = thumbnail.dyn_into::<web_sys::Blob>().ok();
                            done.emit(reply.map(|r| DetectReply { thumbnail, arrived_at, ..r }));
                        }
                    }
                    Response::SelfTest { result } => on_event.emit(WorkerEvent::SelfTest(result)),
                }
            })
        };
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));

        let on_error = {
            let on_event = on_event.clone();
            let inner = inner.clone();
            Closure::<dyn FnMut(ErrorEvent)>::new(move |ev: ErrorEvent| {
                ev.prevent_default();
                let why = format!("the inference worker crashed ({})", ev.message());
                let pending: Vec<_> = inner.borrow_mut().pending.drain().collect();
                for (_, done) in pending {
                    done.emit(Err(why.clone()));
                }
                on_event.emit(WorkerEvent::Crashed(ev.message()));
            })
        };
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));

        // The page's compiled module: the worker instantiates it without a second download,
        // unless it is to load the WebGPU build (decided once the adapter has answered; jobs
        // queue here meanwhile).
        let auto = if backend == Backend::Auto { remembered_auto_choice() } else { None };
        {
            let worker = worker.clone();
            let on_event = on_event.clone();
            wasm_bindgen_futures::spawn_local(async move {
                let engine = crate::gpu::engine_for(backend, auto.as_ref()).await;
                let init = Init { backend, auto, engine, module: wasm_bindgen::module(), engine_error: None };
                let sent = Request::Init(init)
                    .to_js()
                    .and_then(|(init, _)| worker.post_message(&init).map_err(|e| format!("{e:?}")));
                if let Err(e) = sent {
                    on_event.emit(WorkerEvent::Fatal(format!("could not start the inference worker: {e}")));
                }
            });
        }

        Ok(InferenceWorker { worker, inner, _on_message: on_message, _on_error: on_error })
    }

    /// Finds (or, as `step` says, follows) and classifies (from `views`) the faces of `image`, whose
    /// buffer is transferred (not copied) to the worker; `done` gets the answer.
    pub fn detect(
        &self,
        image: Image,
        min_face: f32,
        min_face_fraction: f32,
        (step, views): (Step, Views),
        done: Callback<Reply>,
    ) {
        let mut inner = self.inner.borrow_mut();
        inner.next_id = inner.next_id.wrapping_add(1);
        let id = inner.next_id;
        let request = Request::Detect(DetectJob { id, image, min_face, min_face_fraction, step, views });
        inner.pending.insert(id, done);
        if inner.ready {
            post(&self.worker, &request);
        } else {
            inner.queue.push(request);
        }
    }

    /// Asks the worker to check its networks against the reference outputs.
    pub fn self_test(&self) {
        post(&self.worker, &Request::SelfTest);
    }

    /// Gives this worker and `other` a channel of their own, over which each runs parts of the
    /// other's photo detections (see `worker.js` and [`crate::worker`]).
    fn introduce(&self, other: &InferenceWorker) -> Result<(), JsValue> {
        let channel = web_sys::MessageChannel::new()?;
        for (worker, port) in [(&self.worker, channel.port1()), (&other.worker, channel.port2())] {
            let msg = js_sys::Object::new();
            js_sys::Reflect::set(&msg, &"type".into(), &"peer".into())?;
            js_sys::Reflect::set(&msg, &"port".into(), &port)?;
            worker.post_message_with_transfer(&msg, &js_sys::Array::of1(&port))?;
        }
        Ok(())
    }

    /// Whether the models are loaded, and how many jobs wait for an answer.
    fn load(&self) -> (bool, usize) {
        let inner = self.inner.borrow();
        (inner.ready, inner.pending.len())
    }
}

/// The inference workers: one per core the page can spare (see [`pool_size`]). Jobs go to the
/// worker with the fewest waiting; each worker holds its own copy of the models.
///
/// Where that is one worker on a machine of two cores or more (and the address does not say
/// `?workers=N`), the photos page adds a second one that takes no jobs of its own but runs half
/// of each photo's detection (see [`WorkerPool::share_photos`]): one photo is answered sooner,
/// which is what a person dropping one photo waits on. The live page does not start it.
pub struct WorkerPool {
    workers: Rc<RefCell<Vec<InferenceWorker>>>,
    size: usize,
    helper: Rc<RefCell<Helper>>,
}

/// The second worker of a pool of one (see [`WorkerPool`]).
#[derive(Default)]
struct Helper {
    /// The photos page asked for it.
    wanted: bool,
    /// The first worker is ready on the CPU (a WebGPU worker shares no work: its GPU is one).
    first_on_cpu: bool,
    worker: Option<InferenceWorker>,
}

impl WorkerPool {
    /// Starts the first worker on `backend`; once it is ready (for *Auto*, once it has measured),
    /// the others start on the backend it runs, so *Auto* measures once and all run alike.
    /// `on_event` hears the first worker's events, and crashes and lost GPUs of any.
    pub fn spawn(backend: Backend, on_event: Callback<WorkerEvent>) -> Result<Self, String> {
        let size = pool_size();
        let workers: Rc<RefCell<Vec<InferenceWorker>>> = Rc::new(RefCell::new(Vec::with_capacity(size)));
        let helper: Rc<RefCell<Helper>> = Rc::default();
        let others = {
            let on_event = on_event.clone();
            Callback::from(move |ev: WorkerEvent| match ev {
                WorkerEvent::Crashed(_) | WorkerEvent::GpuLost(_) => on_event.emit(ev),
                WorkerEvent::Fatal(e) => {
                    web_sys::console::warn_1(&format!("mien: an extra inference worker could not start ({e})").into())
                }
                WorkerEvent::Ready { .. } | WorkerEvent::SelfTest(_) => {}
            })
        };
        let first = {
            let workers = Rc::downgrade(&workers);
            let helper = Rc::downgrade(&helper);
            Callback::from(move |ev: WorkerEvent| {
                if let (WorkerEvent::Ready { backend, .. }, Some(workers), Some(helper)) =
                    (&ev, workers.upgrade(), helper.upgrade())
                {
                    helper.borrow_mut().first_on_cpu = *backend == ActiveBackend::Cpu;
                    start_helper(&workers, &helper, size);
                }
                if let (WorkerEvent::Ready { backend, .. }, Some(workers)) = (&ev, workers.upgrade()) {
                    let backend = match backend {
                        ActiveBackend::Cpu => Backend::Cpu,
                        ActiveBackend::WebGpu => Backend::WebGpu,
                    };
                    let running = workers.borrow().len();
                    for _ in running..size {
                        match InferenceWorker::spawn(backend, others.clone()) {
                            Ok(w) => workers.borrow_mut().push(w),
                            Err(e) => web_sys::console::warn_1(&format!("mien: {e}").into()),
                        }
                    }
                }
                on_event.emit(ev)
            })
        };
        let worker = InferenceWorker::spawn(backend, first)?;
        workers.borrow_mut().push(worker);
        Ok(WorkerPool { workers, size, helper })
    }

    /// Starts the second worker that shares each photo's detection, where the pool is one
    /// worker and the machine has a core to spare for it (see [`WorkerPool`]); called by the
    /// photos page, so it loads while the person picks photos.
    pub fn share_photos(&self) {
        self.helper.borrow_mut().wanted = true;
        start_helper(&self.workers, &self.helper, self.size);
    }

    /// How many workers the pool runs (once all have started).
    pub fn size(&self) -> usize {
        self.size
    }

    /// As [`InferenceWorker::detect`], on the ready worker with the fewest jobs waiting (the first
    /// worker, which queues jobs, while none is ready).
    pub fn detect(
        &self,
        image: Image,
        min_face: f32,
        min_face_fraction: f32,
        job: (Step, Views),
        done: Callback<Reply>,
    ) {
        let workers = self.workers.borrow();
        let best =
            (0..workers.len()).filter(|&i| workers[i].load().0).min_by_key(|&i| workers[i].load().1).unwrap_or(0);
        workers[best].detect(image, min_face, min_face_fraction, job, done);
    }

    /// Asks the first worker to check its networks against the reference outputs.
    pub fn self_test(&self) {
        if let Some(w) = self.workers.borrow().first() {
            w.self_test();
        }
    }
}

/// Starts the pool's helper worker if it is wanted and useful (see [`WorkerPool::share_photos`]),
/// and introduces it to the first worker once it is ready.
fn start_helper(workers: &Rc<RefCell<Vec<InferenceWorker>>>, helper: &Rc<RefCell<Helper>>, size: usize) {
    let cores = web_sys::window().map_or(1, |w| w.navigator().hardware_concurrency() as usize);
    {
        let h = helper.borrow();
        let one = size == 1 && asked_workers().is_none();
        if !h.wanted || !h.first_on_cpu || h.worker.is_some() || !one || cores < 2 || workers.borrow().is_empty() {
            return;
        }
    }
    let on_event = {
        let (workers, helper) = (Rc::downgrade(workers), Rc::downgrade(helper));
        Callback::from(move |ev: WorkerEvent| match ev {
            WorkerEvent::Ready { .. } => {
                let (Some(workers), Some(helper)) = (workers.upgrade(), helper.upgrade()) else { return };
                let (workers, helper) = (workers.borrow(), helper.borrow());
                if let (Some(first), Some(second)) = (workers.first(), helper.worker.as_ref()) {
                    match first.introduce(second) {
                        // For tests and benchmarks: photos dropped from now on are shared.
                        Ok(()) => {
                            if let Some(body) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.body()) {
                                let _ = body.set_attribute("data-photo-helper", "ready");
                            }
                        }
                        Err(e) => {
                            web_sys::console::warn_2(&"mien: the second worker could not be introduced".into(), &e)
                        }
                    }
                }
            }
            // The first worker runs every part itself when its peer fails: nothing is lost.
            WorkerEvent::Fatal(e) | WorkerEvent::Crashed(e) => {
                web_sys::console::warn_1(&format!("mien: the second worker stopped ({e}); photos run on one").into())
            }
            WorkerEvent::SelfTest(_) | WorkerEvent::GpuLost(_) => {}
        })
    };
    match InferenceWorker::spawn(Backend::Cpu, on_event) {
        Ok(w) => helper.borrow_mut().worker = Some(w),
        Err(e) => web_sys::console::warn_1(&format!("mien: {e}").into()),
    }
}

/// How many inference workers to run: `?workers=N` (1 to 8) where given, else one per core
/// beyond the one the page itself needs (`navigator.hardwareConcurrency − 1`), at most four.
/// On a 2-core machine that is one: there a second worker competes with the page, the camera
/// and the compositor for the same two cores (measured in docs/MEASUREMENTS.md).
fn pool_size() -> usize {
    let Some(window) = web_sys::window() else { return 1 };
    asked_workers()
        .unwrap_or_else(|| (window.navigator().hardware_concurrency() as usize).saturating_sub(1).clamp(1, 4))
}

/// The `?workers=N` of the page's address (1 to 8), if any: exactly that many workers run, and
/// no second worker shares a pool of one's photos.
fn asked_workers() -> Option<usize> {
    web_sys::window()?
        .location()
        .search()
        .ok()
        .and_then(|q| web_sys::UrlSearchParams::new_with_str(&q).ok())
        .and_then(|p| p.get("workers"))
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| (1..=8).contains(n))
}

/// Where *Auto*'s measurement is kept (`localStorage`).
const AUTO_CHOICE_KEY: &str = "mien-auto-choice";

/// This browser and this build of the app: *Auto* measures again when either changes.
fn auto_choice_context() -> String {
    let browser = web_sys::window().and_then(|w| w.navigator().user_agent().ok()).unwrap_or_default();
    format!("{} {} | {browser}", env!("CARGO_PKG_VERSION"), option_env!("MIEN_BUILD_ID").unwrap_or("unknown build"))
}

/// The page's `localStorage`, where the browser allows it (not in every private mode).
fn local_storage() -> Option<JsValue> {
    let window = web_sys::window()?;
    js_sys::Reflect::get(&window, &"localStorage".into()).ok().filter(|s| !s.is_null() && !s.is_undefined())
}

/// What *Auto* measured on an earlier visit, if the browser and the app are still the same.
fn remembered_auto_choice() -> Option<AutoChoice> {
    #[derive(serde::Deserialize)]
    struct Kept {
        context: String,
        choice: AutoChoice,
    }
    let storage = local_storage()?;
    let get: js_sys::Function = js_sys::Reflect::get(&storage, &"getItem".into()).ok()?.dyn_into().ok()?;
    let text = get.call1(&storage, &AUTO_CHOICE_KEY.into()).ok()?.as_string()?;
    let kept: Kept = serde_json::from_str(&text).ok()?;
    (kept.context == auto_choice_context()).then_some(kept.choice)
}

/// Keeps what *Auto* measured, for the next visits.
fn remember_auto_choice(choice: &AutoChoice) {
    let Some(storage) = local_storage() else { return };
    let text = serde_json::json!({ "context": auto_choice_context(), "choice": choice }).to_string();
    if let Ok(set) = js_sys::Reflect::get(&storage, &"setItem".into()).and_then(|f| f.dyn_into::<js_sys::Function>()) {
        // A full or refused storage only means measuring again next time.
        let _ = set.call2(&storage, &AUTO_CHOICE_KEY.into(), &text.into());
    }
}

/// Milliseconds since the epoch, on the clock the worker stamps its answers with.
fn epoch_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map(|p| p.time_origin() + p.now()).unwrap_or_else(js_sys::Date::now)
}

fn post(worker: &Worker, request: &Request) {
    let result = request.to_js().map_err(JsValue::from).and_then(|(msg, transfer)| {
        if transfer.length() == 0 {
            worker.post_message(&msg)
        } else {
            worker.post_message_with_transfer(&msg, &transfer)
        }
    });
    if let Err(e) = result {
        web_sys::console::error_2(&"mien: could not send a job to the worker".into(), &e);
    }
}

impl Drop for InferenceWorker {
    fn drop(&mut self) {
        self.worker.terminate();
        let pending: Vec<_> = self.inner.borrow_mut().pending.drain().collect();
        for (_, done) in pending {
            done.emit(Err("interrupted: the engine was restarted; try again".into()));
        }
    }
}
