//! The photos page: choose, drop or paste photos; each appears with its faces boxed, their
//! landmarks marked and their expressions classified, computed by the worker in this tab.
//! The results download as CSV or JSON, built in the page (nothing is uploaded).
//!
//! Photos wait in a queue as file handles (nothing is read until its turn); at most
//! one per worker and [`IN_FLIGHT`] more are read and sent to the workers at a time, so dropping
//! 200 photos holds two files in memory (with one worker), not 200. The queue shows its progress and time left, and can be cancelled.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use gloo::events::EventListener;
use gloo::file::{Blob, ObjectUrl};
use js_sys::ArrayBuffer;
use mien::Emotion;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{ClipboardEvent, DragEvent, File, FileList, HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

use crate::engine::{EngineContext, WorkerRef};
use crate::protocol::DetectReply;
use crate::widgets::top;

mod card;
use card::PhotoCard;

#[derive(Clone, PartialEq)]
pub enum Status {
    /// Waiting for its turn.
    Queued,
    /// Read and sent to the worker.
    Pending,
    /// Taken out of the queue by Cancel before its turn.
    Cancelled,
    Done(DetectReply),
    Failed(String),
}

#[derive(Clone)]
pub struct Photo {
    pub id: u32,
    pub name: String,
    pub url: Rc<ObjectUrl>,
    pub status: Status,
    /// When the photo was dropped or chosen (`performance.now()`, ms).
    pub added_ms: f64,
    /// From then to its answer, in ms (shown as the card's `data-answer-ms`).
    pub answer_ms: Option<f64>,
    /// Where that time went, as JSON (the card's `data-timeline`): reading the file, the job's
    /// way to the worker, the worker, and the answer's way back, in ms.
    pub timeline: Option<String>,
    /// Counts the photo's changes, so a card compares with its last render in constant time.
    pub version: u32,
}

impl PartialEq for Photo {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.version == other.version
    }
}

/// The page's photos. Each is shared (`Rc`): an action copies the list of pointers and the one
/// photo it changes, not every photo's answer, so a batch of thousands costs the same per photo
/// at its end as at its start.
#[derive(Clone, PartialEq, Default)]
pub struct PhotosState {
    pub photos: Vec<Rc<Photo>>,
    next_id: u32,
    /// Photos answered (or failed) since the page opened: the exports are rebuilt when it moves.
    answered: u64,
}

impl PhotosState {
    fn photo_mut(&mut self, id: u32) -> Option<&mut Photo> {
        self.photos.iter_mut().find(|p| p.id == id).map(|p| {
            let p = Rc::make_mut(p);
            p.version += 1;
            p
        })
    }
}

pub enum Action {
    Add(Photo),
    Start(u32),
    /// A photo's answer, and when its file had been read (`performance.now()`).
    Finish(u32, Result<DetectReply, String>, Option<f64>),
    /// Marks the photos still queued as cancelled.
    Cancel,
    Clear,
}

impl Reducible for PhotosState {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut s = (*self).clone();
        match action {
            Action::Add(p) => {
                s.next_id = s.next_id.max(p.id);
                s.photos.push(Rc::new(p))
            }
            Action::Start(id) => {
                if let Some(p) = s.photo_mut(id) {
                    p.status = Status::Pending;
                }
            }
            Action::Cancel => {
                for p in s.photos.iter_mut().filter(|p| p.status == Status::Queued) {
                    let p = Rc::make_mut(p);
                    p.status = Status::Cancelled;
                    p.version += 1;
                }
            }
            Action::Finish(id, r, read_at) => {
                s.answered += 1;
                if let Some(p) = s.photo_mut(id) {
                    let now = now_ms();
                    p.answer_ms = Some(now - p.added_ms);
                    if let (Ok(reply), Some(read_at)) = (&r, read_at) {
                        let origin = web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.time_origin());
                        p.timeline = Some(format!(
                            r#"{{"read":{:.1},"to_worker":{:.1},"worker":{:.1},"to_page":{:.1},"in_page":{:.1}}}"#,
                            read_at - p.added_ms,
                            reply.received_at - (origin + read_at),
                            reply.answered_at - reply.received_at,
                            reply.arrived_at - reply.answered_at,
                            origin + now - reply.arrived_at
                        ));
                    }
                    p.status = match r {
                        Ok(mut reply) => {
                            // A large photo is shown by its thumbnail; the original's URL is
                            // revoked as it drops, and the page never decodes the original.
                            if let Some(thumbnail) = reply.thumbnail.take() {
                                p.url = Rc::new(ObjectUrl::from(Blob::from(thumbnail)));
                            }
                            Status::Done(reply)
                        }
                        Err(e) => Status::Failed(e),
                    };
                }
            }
            Action::Clear => s.photos.clear(),
        }
        Rc::new(s)
    }
}

thread_local! {
    /// Photo ids are unique for the page's lifetime, so a late answer never lands on a new card.
    static NEXT_ID: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

fn next_id() -> u32 {
    NEXT_ID.with(|n| {
        n.set(n.get() + 1);
        n.get()
    })
}

/// The smallest-face choices: a share of the photo's shorter side. The work per photo is bounded
/// by it, so the smaller choices say what they cost on a large photo.
const MIN_FACE_CHOICES: [(f32, &str); 4] = [
    (mien::detect::DEFAULT_MIN_FACE_FRACTION, "5 % of the photo (fast)"),
    (0.02, "2 % (group photos; slower on large photos)"),
    (0.0075, "0.75 % (crowds; several seconds on a large photo)"),
    (0.0, "any face from 20 px (slowest: grows with the photo's area)"),
];

/// Photos read and handed to the workers at a time, beyond one per worker: one being analysed
/// by each, and the next one ready.
const IN_FLIGHT: usize = 1;

/// Photos waiting for their turn, as file handles, and the progress of the current batch.
#[derive(Default)]
struct Queue {
    waiting: VecDeque<(u32, File, f32)>,
    in_flight: usize,
    /// Photos finished since the queue was last empty, and when that batch began (ms).
    batch_done: usize,
    batch_started: f64,
}

/// Sends queued photos to the workers until one per worker and [`IN_FLIGHT`] more are there;
/// each answer sends the next.
fn pump(
    queue: &Rc<RefCell<Queue>>,
    worker: &WorkerRef,
    dispatcher: &UseReducerDispatcher<PhotosState>,
    tick: &UseStateSetter<u32>,
) {
    loop {
        let next = {
            let mut q = queue.borrow_mut();
            if q.in_flight >= IN_FLIGHT + worker.pool_size() {
                return;
            }
            let Some(next) = q.waiting.pop_front() else { return };
            q.in_flight += 1;
            next
        };
        let (id, file, min_face) = next;
        // The read starts now, so the browser reads the file while the page re-renders.
        let read = JsFuture::from(file.array_buffer());
        dispatcher.dispatch(Action::Start(id));
        let (queue, worker, dispatcher, tick) = (queue.clone(), worker.clone(), dispatcher.clone(), tick.clone());
        wasm_bindgen_futures::spawn_local(async move {
            let finish = {
                let (queue, worker, dispatcher, tick) =
                    (queue.clone(), worker.clone(), dispatcher.clone(), tick.clone());
                move |r: Result<DetectReply, String>, read_at: Option<f64>| {
                    dispatcher.dispatch(Action::Finish(id, r, read_at));
                    {
                        let mut q = queue.borrow_mut();
                        q.in_flight -= 1;
                        q.batch_done += 1;
                        tick.set(q.batch_done as u32);
                    }
                    pump(&queue, &worker, &dispatcher, &tick);
                }
            };
            match read.await {
                Ok(b) => {
                    let read_at = now_ms();
                    let done = Callback::from(move |r| finish(r, Some(read_at)));
                    worker.detect_file(b.unchecked_into::<ArrayBuffer>(), min_face, done)
                }
                Err(e) => finish(Err(format!("the file could not be read ({e:?}); is it still on the disk?")), None),
            }
        });
    }
}

fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map(|p| p.now()).unwrap_or_else(js_sys::Date::now)
}

#[function_component(Photos)]
pub fn photos() -> Html {
    let ctx = use_context::<EngineContext>().expect("Photos is rendered inside the app shell");
    let state = use_reducer(PhotosState::default);
    let min_face = use_state(|| mien::detect::DEFAULT_MIN_FACE_FRACTION);
    let queue = use_mut_ref(Queue::default);
    // Re-renders the progress line when a photo of the batch finishes.
    let tick = use_state(|| 0u32);

    // The second worker that shares each photo's detection (where the machine has a core for
    // it) loads while the person picks photos; after each render, so a restarted engine gets
    // one too. It returns at once when there is one already.
    {
        let worker = ctx.worker.clone();
        use_effect(move || {
            worker.share_photos();
            || ()
        });
    }

    let add_files = {
        let worker = ctx.worker.clone();
        let dispatcher = state.dispatcher();
        let min_face = min_face.clone();
        let queue = queue.clone();
        let tick = tick.setter();
        Callback::from(move |files: Vec<File>| {
            {
                let mut q = queue.borrow_mut();
                if q.waiting.is_empty() && q.in_flight == 0 {
                    q.batch_done = 0;
                    q.batch_started = now_ms();
                }
            }
            for file in files {
                let id = next_id();
                let name = if file.name().is_empty() { format!("pasted-{id}") } else { file.name() };
                let url = Rc::new(ObjectUrl::from(Blob::from(file.clone())));
                dispatcher.dispatch(Action::Add(Photo {
                    id,
                    name,
                    url,
                    status: Status::Queued,
                    added_ms: now_ms(),
                    answer_ms: None,
                    timeline: None,
                    version: 0,
                }));
                queue.borrow_mut().waiting.push_back((id, file, *min_face));
            }
            pump(&queue, &worker, &dispatcher, &tick);
        })
    };
    let on_cancel = {
        let dispatcher = state.dispatcher();
        let queue = queue.clone();
        Callback::from(move |_| {
            queue.borrow_mut().waiting.clear();
            dispatcher.dispatch(Action::Cancel);
        })
    };
    let progress = {
        let q = queue.borrow();
        let left = q.waiting.len() + q.in_flight;
        (left > 0).then(|| {
            let total = q.batch_done + left;
            let per_photo = (q.batch_done > 0).then(|| (now_ms() - q.batch_started) / q.batch_done as f64);
            let eta = match per_photo {
                Some(ms) => format!(" · about {:.0} s left", ms * left as f64 / 1000.0),
                None => String::new(),
            };
            (q.batch_done, total, eta)
        })
    };

    // Paste anywhere on the page (a screenshot, an image copied from another tab).
    {
        let add_files = add_files.clone();
        use_effect_with((), move |_| {
            let listener = web_sys::window().and_then(|w| w.document()).map(|d| {
                EventListener::new(&d, "paste", move |e| {
                    let Some(e) = e.dyn_ref::<ClipboardEvent>() else { return };
                    let files = files_of(e.clipboard_data().and_then(|d| d.files()));
                    let images: Vec<File> = files.into_iter().filter(|f| f.type_().starts_with("image/")).collect();
                    if !images.is_empty() {
                        add_files.emit(images);
                    }
                })
            });
            move || drop(listener)
        });
    }

    let on_input_change = {
        let add_files = add_files.clone();
        Callback::from(move |e: Event| {
            let input: HtmlInputElement = e.target_unchecked_into();
            add_files.emit(files_of(input.files()));
            input.set_value("");
        })
    };
    let on_drop = {
        let add_files = add_files.clone();
        Callback::from(move |e: DragEvent| {
            e.prevent_default();
            add_files.emit(files_of(e.data_transfer().and_then(|d| d.files())));
        })
    };
    let on_drag_over = Callback::from(|e: DragEvent| e.prevent_default());
    let on_min_face = {
        let min_face = min_face.clone();
        Callback::from(move |e: Event| {
            let select: HtmlSelectElement = e.target_unchecked_into();
            if let Ok(v) = select.value().parse::<f32>() {
                min_face.set(v.clamp(0.0, 0.5));
            }
        })
    };
    let on_clear = {
        let dispatcher = state.dispatcher();
        let queue = queue.clone();
        Callback::from(move |_| {
            queue.borrow_mut().waiting.clear();
            dispatcher.dispatch(Action::Clear)
        })
    };
    // The exports cover every answered photo. They are built once a batch has ended (and again
    // when another ends), not at each answer: building them is linear in the photos answered,
    // so at each answer it made a batch quadratic (and each old copy was kept).
    let idle = progress.is_none();
    let exports = {
        let photos = state.photos.clone();
        use_memo((idle, state.answered, photos.len()), move |&(idle, _, _)| {
            let done: Vec<(&str, &DetectReply)> = photos
                .iter()
                .filter_map(|p| match &p.status {
                    Status::Done(r) => Some((p.name.as_str(), r)),
                    _ => None,
                })
                .collect();
            (idle && !done.is_empty()).then(|| {
                (
                    ObjectUrl::from(Blob::new_with_options(results_csv(&done).as_str(), Some("text/csv"))),
                    ObjectUrl::from(Blob::new_with_options(results_json(&done).as_str(), Some("application/json"))),
                )
            })
        })
    };
    let csv_href = exports.as_ref().as_ref().map(|(csv, _)| csv.to_string());
    let json_href = exports.as_ref().as_ref().map(|(_, json)| json.to_string());

    html! {
        <>
        <section class="controls card" aria-label="Photos">
            <label class="drop" ondrop={on_drop} ondragover={on_drag_over}>
                <input id="file-input" type="file" multiple=true accept="image/*" onchange={on_input_change} />
                <span>{ "Choose photos, drop them here, or paste one (Ctrl+V)" }</span>
            </label>
            <div class="settings">
                <label title="A face smaller than this share of the photo's shorter side is not searched for. Smaller shares find the faces at the back of a group photo, and a large photo then takes longer and more memory.">{ "Smallest face " }
                    <select id="min-face" onchange={on_min_face}>
                        { for MIN_FACE_CHOICES.iter().map(|(v, label)| html! {
                            <option value={v.to_string()} selected={*min_face == *v}>{ *label }</option>
                        }) }
                    </select>
                </label>
                <button type="button" onclick={on_clear} disabled={state.photos.is_empty()}>{ "Clear" }</button>
                { match &progress {
                    Some((done, total, eta)) => html! {
                        <>
                        <span id="photos-progress" class="note" data-done={done.to_string()} data-total={total.to_string()}>
                            <progress max={total.to_string()} value={done.to_string()}></progress>
                            { format!(" {done} of {total}{eta}") }
                        </span>
                        <button id="photos-cancel" type="button" onclick={on_cancel}>{ "Cancel" }</button>
                        </>
                    },
                    None => html! {},
                } }
                { match csv_href {
                    Some(href) => html! { <a id="download-csv" class="button" href={href} download="mien-results.csv">{ "Download CSV" }</a> },
                    None => html! {},
                } }
                { match json_href {
                    Some(href) => html! { <a id="download-json" class="button" href={href} download="mien-results.json">{ "Download JSON" }</a> },
                    None => html! {},
                } }
            </div>
            { if !ctx.ready() { html! { <p class="note">{ "Photos added now are processed as soon as the models have loaded." }</p> } } else { html! {} } }
        </section>
        <section id="photos" class="photos" aria-live="polite">
            { for state.photos.iter().rev().map(|p| html! { <PhotoCard key={p.id} photo={Rc::clone(p)} /> }) }
        </section>
        </>
    }
}

/// One row per face: file, face number, box, detector score, top emotion and every probability.
pub fn results_csv(results: &[(&str, &DetectReply)]) -> String {
    let labels: Vec<Emotion> =
        results.iter().find(|(_, r)| !r.labels.is_empty()).map(|(_, r)| r.labels.clone()).unwrap_or_default();
    let mut out = String::from("file,face,x1,y1,x2,y2,score,emotion,confidence");
    for l in &labels {
        out.push_str(&format!(",p_{}", l.name()));
    }
    out.push('\n');
    for (name, r) in results {
        let name = format!("\"{}\"", name.replace('"', "\"\""));
        if r.faces.is_empty() {
            out.push_str(&format!("{name},,,,,,,,\n"));
        }
        for (i, f) in r.faces.iter().enumerate() {
            let b = f.face.bbox;
            let (emotion, confidence) = top(&r.labels, &f.probabilities);
            out.push_str(&format!(
                "{name},{},{:.1},{:.1},{:.1},{:.1},{:.4},{},{:.4}",
                i + 1,
                b[0],
                b[1],
                b[2],
                b[3],
                f.face.score,
                emotion,
                confidence
            ));
            for p in &f.probabilities {
                out.push_str(&format!(",{p:.4}"));
            }
            out.push('\n');
        }
    }
    out
}

pub fn results_json(results: &[(&str, &DetectReply)]) -> String {
    let v: Vec<serde_json::Value> = results
        .iter()
        .map(|(name, r)| {
            serde_json::json!({
                "file": name, "width": r.width, "height": r.height, "labels": r.labels,
                "faces": r.faces, "detect_ms": r.detect_ms, "classify_ms": r.classify_ms, "backend": r.backend,
            })
        })
        .collect();
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

fn files_of(list: Option<FileList>) -> Vec<File> {
    let Some(list) = list else { return Vec::new() };
    (0..list.length()).filter_map(|i| list.get(i)).collect()
}
