//! The inference engine every page shares: one worker ([`crate::bridge`]), started on the
//! backend the user chose, restarted after a crash, moved to the CPU when its GPU is lost; and
//! the [`EngineContext`] the shell hands to the pages.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::ArrayBuffer;
use mien::detect::selftest::SelfTest;
use mien::track::Step;
use mien::Views;
use yew::prelude::*;

use crate::bridge::{WorkerEvent, WorkerPool};
use crate::protocol::{ActiveBackend, AutoChoice, Backend, Image, Reply};

/// Where the engine stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Engine {
    Loading,
    Ready { backend: ActiveBackend, note: String, auto: Option<AutoChoice> },
    Failed(String),
}

/// The shared worker. Equality is identity, so pages re-render when it is replaced.
#[derive(Clone)]
pub struct WorkerRef(Rc<RefCell<Option<WorkerPool>>>);

impl PartialEq for WorkerRef {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl WorkerRef {
    /// How many workers run jobs side by side (1 while none runs).
    pub fn pool_size(&self) -> usize {
        self.0.borrow().as_ref().map_or(1, |w| w.size())
    }

    /// Starts the second worker that shares each photo's detection, where it helps (see
    /// [`WorkerPool::share_photos`]).
    pub fn share_photos(&self) {
        if let Some(w) = self.0.borrow().as_ref() {
            w.share_photos();
        }
    }

    /// Finds and classifies the faces of an image file's bytes (transferred to the worker, not
    /// copied), down to faces of `min_face_fraction` of the photo's shorter side (and 20 pixels);
    /// `done` gets the answer, or an error when no worker is running.
    pub fn detect_file(&self, bytes: ArrayBuffer, min_face_fraction: f32, done: Callback<Reply>) {
        let worker = self.0.borrow();
        let min_face = mien::DetectorConfig::default().min_face_size;
        match worker.as_ref() {
            Some(w) => {
                w.detect(Image::File(bytes), min_face, min_face_fraction, (Step::Detect, Views::AsTrained), done)
            }
            None => {
                drop(worker);
                done.emit(Err("the engine is not running".into()));
            }
        }
    }

    /// Finds and classifies the faces of a video frame's RGBA pixels (transferred), or follows
    /// the faces it held (as the [`Step`] says), classifying them from `views`. Returns
    /// false, and drops `done`, when no worker is running.
    pub fn detect_frame(
        &self,
        pixels: ArrayBuffer,
        (width, height): (u32, u32),
        min_face: f32,
        job: (Step, Views),
        done: Callback<Reply>,
    ) -> bool {
        match self.0.borrow().as_ref() {
            Some(w) => {
                // A video frame's smallest face is the page's setting in pixels, as chosen.
                w.detect(Image::Rgba { pixels, width, height }, min_face, 0.0, job, done);
                true
            }
            None => false,
        }
    }
}

/// Which worker the engine runs: a new generation whenever the worker is (re)started, so jobs
/// of an older one are known to be abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation {
    /// Automatic restarts after a crash.
    pub restarts: u32,
    /// The backend it was started on.
    pub backend: Backend,
}

/// What every page gets from the shell.
#[derive(Clone, PartialEq)]
pub struct EngineContext {
    pub engine: Engine,
    pub worker: WorkerRef,
    pub generation: Generation,
}

impl EngineContext {
    pub fn ready(&self) -> bool {
        matches!(self.engine, Engine::Ready { .. })
    }

    /// The backend the models run on, once they are loaded.
    pub fn backend(&self) -> Option<ActiveBackend> {
        match &self.engine {
            Engine::Ready { backend, .. } => Some(*backend),
            _ => None,
        }
    }
}

/// The engine as the shell sees and steers it.
pub struct EngineHandle {
    pub context: EngineContext,
    /// The backend the user chose (or the app moved to when the GPU was lost).
    pub chosen: Backend,
    /// Choose a backend: restarts the worker on it.
    pub choose: Callback<Backend>,
    /// Why the app left the backend the user chose (the GPU was lost), until they choose again.
    pub fallback: Option<String>,
    /// The latest self-test's result, or why it could not run.
    pub self_test: Option<Result<SelfTest, String>>,
    pub run_self_test: Callback<()>,
}

/// The backend asked for in the URL (`?backend=cpu`), else [`Backend::Auto`].
fn initial_backend() -> Backend {
    let search = web_sys::window().and_then(|w| w.location().search().ok()).unwrap_or_default();
    web_sys::UrlSearchParams::new_with_str(&search)
        .ok()
        .and_then(|p| p.get("backend"))
        .and_then(|b| b.parse().ok())
        .unwrap_or_default()
}

/// Runs the engine: (re)starts the worker when the backend changes or after it crashed.
#[hook]
pub fn use_engine() -> EngineHandle {
    let engine = use_state(|| Engine::Loading);
    let backend = use_state(initial_backend);
    let restarts = use_state(|| 0u32);
    let fallback: UseStateHandle<Option<String>> = use_state(|| None);
    let self_test: UseStateHandle<Option<Result<SelfTest, String>>> = use_state(|| None);
    let worker = use_mut_ref(|| None::<WorkerPool>);

    {
        let worker = worker.clone();
        let engine = engine.clone();
        let self_test = self_test.clone();
        let restarts = restarts.clone();
        let chosen = backend.clone();
        let fallback = fallback.clone();
        use_effect_with((*backend, *restarts), move |&(backend, _)| {
            engine.set(Engine::Loading);
            self_test.set(None);
            // Dropping the old worker answers its pending jobs with an error.
            worker.borrow_mut().take();
            let on_event = {
                let engine = engine.clone();
                let self_test = self_test.clone();
                let restarts = restarts.clone();
                let on_gpu = backend != Backend::Cpu;
                Callback::from(move |ev: WorkerEvent| match ev {
                    // Only a worker on a GPU backend can lose its device; a late message from a
                    // replaced worker changes nothing.
                    WorkerEvent::GpuLost(why) if on_gpu => {
                        web_sys::console::warn_1(&format!("mien: the WebGPU device was lost ({why})").into());
                        fallback.set(Some(format!(
                            "The GPU device was lost ({why}); mien moved to the CPU backend and carries on. Choose WebGPU to try the GPU again."
                        )));
                        chosen.set(Backend::Cpu);
                    }
                    WorkerEvent::GpuLost(_) => {}
                    WorkerEvent::Ready { backend, note, auto } => engine.set(Engine::Ready { backend, note, auto }),
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
            match WorkerPool::spawn(backend, on_event) {
                Ok(w) => *worker.borrow_mut() = Some(w),
                Err(e) => engine.set(Engine::Failed(e)),
            }
            || ()
        });
    }

    let choose = {
        let backend = backend.clone();
        let fallback = fallback.clone();
        Callback::from(move |chosen: Backend| {
            fallback.set(None);
            backend.set(chosen);
        })
    };
    let run_self_test = {
        let worker = worker.clone();
        let self_test = self_test.clone();
        Callback::from(move |()| {
            self_test.set(None);
            if let Some(w) = worker.borrow().as_ref() {
                w.self_test();
            }
        })
    };

    EngineHandle {
        context: EngineContext {
            engine: (*engine).clone(),
            worker: WorkerRef(worker),
            generation: Generation { restarts: *restarts, backend: *backend },
        },
        chosen: *backend,
        choose,
        fallback: (*fallback).clone(),
        self_test: (*self_test).clone(),
        run_self_test,
    }
}
