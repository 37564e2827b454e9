//! The page's side of the inference worker: spawning it, queueing jobs until it is ready,
//! transferring pixels without copies, and routing each reply to the callback of its job.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use js_sys::{Array, ArrayBuffer, Object, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{ErrorEvent, MessageEvent, Worker, WorkerOptions, WorkerType};
use yew::Callback;

use crate::worker::DetectReply;

/// The answer to one job.
pub type Reply = Result<DetectReply, String>;

/// Something the worker said (or did), other than job answers.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerEvent {
    /// Models loaded and warmed up on `backend`; `note` explains a fallback, if any.
    Ready { backend: String, note: String },
    /// The worker could not start (weights missing, ...).
    Fatal(String),
    /// Self-test result: JSON of `mien::detect::selftest::SelfTest`, or an error.
    SelfTest(Result<String, String>),
    /// The worker died (an uncaught error); its pending jobs were answered with an error.
    Crashed(String),
    /// The worker's WebGPU device was lost (reason, message).
    GpuLost(String),
}

struct Inner {
    ready: bool,
    queue: Vec<(Object, Option<ArrayBuffer>)>,
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

fn set(obj: &Object, key: &str, value: &JsValue) {
    let _ = Reflect::set(obj, &JsValue::from_str(key), value);
}

fn get(obj: &JsValue, key: &str) -> JsValue {
    Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

impl InferenceWorker {
    /// Starts `worker.js` (which loads this same wasm module) and asks it to load the models on
    /// `backend` (`"auto"`, `"webgpu"` or `"cpu"`).
    pub fn spawn(backend: &str, on_event: Callback<WorkerEvent>) -> Result<Self, String> {
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
                let data = ev.data();
                match get(&data, "type").as_string().as_deref() {
                    Some("ready") => {
                        let queued = {
                            let mut inner = inner.borrow_mut();
                            inner.ready = true;
                            std::mem::take(&mut inner.queue)
                        };
                        for (msg, buf) in queued {
                            post(&worker, &msg, buf.as_ref());
                        }
                        on_event.emit(WorkerEvent::Ready {
                            backend: get(&data, "backend").as_string().unwrap_or_default(),
                            note: get(&data, "note").as_string().unwrap_or_default(),
                        });
                    }
                    Some("gpu-lost") => on_event.emit(WorkerEvent::GpuLost({
                        let message = get(&data, "message").as_string().unwrap_or_default();
                        let reason = get(&data, "reason").as_string().unwrap_or_default();
                        let why = if message.trim().is_empty() { reason } else { message };
                        why.trim().trim_end_matches('.').to_string()
                    })),
                    Some("fatal") => on_event.emit(WorkerEvent::Fatal(
                        get(&data, "error").as_string().unwrap_or_else(|| "unknown error".into()),
                    )),
                    Some("result") => {
                        let id = get(&data, "id").as_f64().unwrap_or(-1.0) as u32;
                        let json = get(&data, "json").as_string().unwrap_or_default();
                        let done = inner.borrow_mut().pending.remove(&id);
                        if let Some(done) = done {
                            done.emit(parse_reply(&json));
                        }
                    }
                    Some("selftest") => {
                        let json = get(&data, "json").as_string().unwrap_or_default();
                        let parsed: Result<serde_json::Value, _> = serde_json::from_str(&json);
                        on_event.emit(WorkerEvent::SelfTest(match parsed {
                            Ok(v) if v.get("error").is_some() => Err(v["error"].as_str().unwrap_or("?").to_string()),
                            Ok(_) => Ok(json),
                            Err(e) => Err(e.to_string()),
                        }));
                    }
                    _ => {}
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

        let init = Object::new();
        set(&init, "type", &"init".into());
        set(&init, "backend", &backend.into());
        // The page's compiled module: the worker instantiates it without a second download.
        set(&init, "module", &wasm_bindgen::module());
        worker.post_message(&init).map_err(|e| format!("could not start the worker: {e:?}"))?;

        Ok(InferenceWorker { worker, inner, _on_message: on_message, _on_error: on_error })
    }

    fn submit(&self, msg: Object, buffer: ArrayBuffer, done: Callback<Reply>) {
        let mut inner = self.inner.borrow_mut();
        inner.next_id = inner.next_id.wrapping_add(1);
        let id = inner.next_id;
        set(&msg, "type", &"detect".into());
        set(&msg, "id", &JsValue::from(id));
        inner.pending.insert(id, done);
        if inner.ready {
            post(&self.worker, &msg, Some(&buffer));
        } else {
            inner.queue.push((msg, Some(buffer)));
        }
    }

    /// Finds and classifies the faces of an image file's bytes (transferred, not copied).
    pub fn detect_file(&self, bytes: ArrayBuffer, min_face: f64, done: Callback<Reply>) {
        let msg = Object::new();
        set(&msg, "bytes", &bytes);
        set(&msg, "minFace", &JsValue::from(min_face));
        self.submit(msg, bytes, done);
    }

    /// Finds and classifies the faces of a video frame (RGBA pixels, transferred).
    pub fn detect_rgba(&self, rgba: ArrayBuffer, width: u32, height: u32, min_face: f64, done: Callback<Reply>) {
        let msg = Object::new();
        set(&msg, "rgba", &rgba);
        set(&msg, "width", &JsValue::from(width));
        set(&msg, "height", &JsValue::from(height));
        set(&msg, "minFace", &JsValue::from(min_face));
        self.submit(msg, rgba, done);
    }

    /// Asks the worker to check its networks against the reference outputs.
    pub fn self_test(&self) {
        let msg = Object::new();
        set(&msg, "type", &"selftest".into());
        let _ = self.worker.post_message(&msg);
    }
}

fn post(worker: &Worker, msg: &Object, buffer: Option<&ArrayBuffer>) {
    let result = match buffer {
        Some(b) => worker.post_message_with_transfer(msg, &Array::of1(b)),
        None => worker.post_message(msg),
    };
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

fn parse_reply(json: &str) -> Reply {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("bad reply from the worker: {e}"))?;
    if let Some(err) = value.get("error").and_then(|e| e.as_str()) {
        return Err(err.to_string());
    }
    serde_json::from_value(value).map_err(|e| format!("bad reply from the worker: {e}"))
}
