//! The live page: the webcam, every face boxed with its emotion, tracked across frames and
//! smoothed over time.
//!
//! At most one frame per worker and [`MAX_IN_FLIGHT`] more are in the workers: when inference is
//! slower than the camera, frames are dropped (the next one taken is always the newest), never queued. Pixels go to the
//! worker as a transferred buffer, so the page thread only draws. Most frames are not searched
//! for faces: the worker follows the faces of the latest answer, and the whole MTCNN cascade runs
//! only when [`DetectionSchedule`] says so (no face yet, a face lost, and every few frames for
//! faces that came into view).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use gloo::events::EventListener;
use gloo::timers::callback::Interval;
use js_sys::{ArrayBuffer, Object, Reflect};
use mien::track::{DetectionSchedule, FaceTracker, Step, Track};
use mien::{Emotion, Views};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, HtmlSelectElement, HtmlVideoElement, MediaStream};
use yew::prelude::*;

use self::camera::{cameras, open_camera, stop_stream};
use crate::engine::EngineContext;
use crate::protocol::Reply;
use crate::widgets::{probability_bars, top};

mod camera;

/// Frames wider than this are scaled down before detection: reading a video frame back and
/// resampling it cost as much as detection itself at 640, and webcam faces stay large enough.
const MAX_FRAME_WIDTH: u32 = 480;
/// Smallest face searched for in camera frames by default, in pixels of the (480-wide) frame: a
/// face at arm's length from a webcam is 90–190 px there, and each doubling of the minimum makes
/// the detector's image pyramid about four times cheaper.
const LIVE_MIN_FACE: f64 = 48.0;
/// Frames between two searches of the whole frame while faces are followed: a face that comes
/// into view is labelled at most this many frames plus the frames in flight after it appeared.
const DETECT_EVERY: u32 = 6;
/// Frames sent to the workers and not yet answered, beyond one per worker. One: while each
/// worker runs a frame, the next is already read back and waiting, so neither the workers nor
/// the page idle for the other (on two cores, the frame rate becomes that of the slower side,
/// not of both in turn). Frames are still dropped, never queued: the camera's other frames are
/// not read at all.
const MAX_IN_FLIGHT: u32 = 1;

#[derive(Debug, Clone, PartialEq)]
enum Camera {
    Off,
    Starting,
    On,
    /// A message saying what went wrong and what to do.
    Failed(String),
}

/// What the page shows of the latest classified frame.
#[derive(Debug, Clone, PartialEq, Default)]
struct LiveView {
    tracks: Vec<Track>,
    labels: Vec<Emotion>,
    width: u32,
    height: u32,
    fps: f64,
    detect_ms: f64,
    follow_ms: f64,
    classify_ms: f64,
    frames: u64,
    /// Frames searched with the whole cascade (the others were followed), shown or not.
    searched: u64,
    /// Median milliseconds, over the last two seconds, from reading a frame off the video to
    /// having its answer.
    latency_ms: f64,
    /// Milliseconds from navigation to the first classified frame.
    first_frame_ms: Option<f64>,
    error: Option<String>,
}

#[derive(Default)]
struct Loop {
    stream: Option<MediaStream>,
    in_flight: u32,
    /// The video time of the last frame sent, so one camera frame is never sent twice (where
    /// the browser cannot count the video's frames: see [`VideoFrames`]).
    last_sent: f64,
    /// Frames the video presented, and the count when the last frame was taken, where the
    /// browser counts them ([`VideoFrames`]): a new frame is taken only when they differ.
    presented: Option<u64>,
    taken: u64,
    /// Frames sent to the workers, and the number of the newest frame whose answer is shown.
    sent: u64,
    shown: u64,
    tracker: FaceTracker,
    schedule: DetectionSchedule,
    /// When each of the last two seconds' answers arrived, and how long after its frame was read.
    done_at: VecDeque<(f64, f64)>,
    frames: u64,
    /// Answers to searched and to followed frames, shown or not.
    searched: u64,
    followed: u64,
    detect_ms: f64,
    follow_ms: f64,
    classify_ms: f64,
    first_frame_ms: Option<f64>,
    /// Bumped on every start/stop: answers for frames of an older session are ignored.
    session: u32,
    _track_listeners: Vec<EventListener>,
    /// Takes the next frame at once when an answer arrives, instead of at the next timer tick.
    kick: Option<Rc<dyn Fn()>>,
}

fn now() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map(|p| p.now()).unwrap_or_else(js_sys::Date::now)
}

#[function_component(Live)]
pub fn live() -> Html {
    let ctx = use_context::<EngineContext>().expect("Live is rendered inside the app shell");
    let video_ref = use_node_ref();
    let canvas_ref = use_node_ref();
    let camera = use_state(|| Camera::Off);
    let view = use_state(LiveView::default);
    let cameras_list = use_state(Vec::<(String, String)>::new);
    let chosen = use_state(String::new);
    let min_face = use_state(|| LIVE_MIN_FACE);
    let hidden = use_state(|| web_sys::window().and_then(|w| w.document()).map(|d| d.hidden()).unwrap_or(false));
    let state = use_mut_ref(Loop::default);

    // Pause while the tab is hidden (browsers throttle hidden tabs; frames would be stale).
    {
        let hidden = hidden.clone();
        use_effect_with((), move |_| {
            let listener = web_sys::window().and_then(|w| w.document()).map(|d| {
                let doc = d.clone();
                EventListener::new(&d, "visibilitychange", move |_| hidden.set(doc.hidden()))
            });
            move || drop(listener)
        });
    }

    // Stop the camera when the page is left.
    {
        let state = state.clone();
        use_effect_with((), move |_| {
            move || {
                let mut s = state.borrow_mut();
                s.session += 1;
                if let Some(stream) = s.stream.take() {
                    stop_stream(&stream);
                }
            }
        });
    }

    // The frame pump: whenever no frame is in the worker, take the newest one.
    {
        let state = state.clone();
        let state_for_kick = state.clone();
        let video_ref = video_ref.clone();
        let video_for_frames = video_ref.clone();
        let canvas_ref = canvas_ref.clone();
        let view = view.clone();
        let ctx = ctx.clone();
        let camera_on = *camera == Camera::On;
        let paused = *hidden;
        let min_face = *min_face as u32;
        use_effect_with(
            (camera_on, paused, ctx.generation, ctx.ready(), min_face),
            move |&(on, paused, _, ready, min_face)| {
                let active = on && !paused && ready;
                let tick: Rc<dyn Fn()> =
                    Rc::new(move || pump(&state, &video_ref, &canvas_ref, &view, &ctx, min_face as f64));
                let kick_holder = state_for_kick.clone();
                kick_holder.borrow_mut().kick = active.then(|| tick.clone());
                // Each new camera frame is taken as soon as it is presented (if the worker has
                // room for it).
                let frames = video_for_frames.cast::<HtmlVideoElement>().filter(|_| active).and_then(|video| {
                    let state = kick_holder.clone();
                    let tick = tick.clone();
                    VideoFrames::watch(video, move || {
                        {
                            let mut s = state.borrow_mut();
                            s.presented = Some(s.presented.unwrap_or(0) + 1);
                        }
                        tick()
                    })
                });
                if frames.is_none() {
                    kick_holder.borrow_mut().presented = None;
                }
                // The timer only starts the loop (and restarts it when the video was not ready).
                let interval = active.then(|| Interval::new(10, move || tick()));
                move || {
                    kick_holder.borrow_mut().kick = None;
                    drop(frames);
                    drop(interval)
                }
            },
        );
    }

    let start = {
        let camera = camera.clone();
        let video_ref = video_ref.clone();
        let state = state.clone();
        let cameras_list = cameras_list.clone();
        let chosen = chosen.clone();
        let view = view.clone();
        Callback::from(move |device: Option<String>| {
            let device = device.unwrap_or_else(|| (*chosen).clone());
            camera.set(Camera::Starting);
            {
                let mut s = state.borrow_mut();
                s.session += 1;
                if let Some(old) = s.stream.take() {
                    stop_stream(&old);
                }
                s.tracker.reset();
                s.schedule = DetectionSchedule::new(DETECT_EVERY);
                s.in_flight = 0;
                s.last_sent = -1.0;
                s.taken = s.presented.unwrap_or(0);
                s._track_listeners.clear();
            }
            view.set(LiveView { first_frame_ms: view.first_frame_ms, ..LiveView::default() });
            let camera = camera.clone();
            let video_ref = video_ref.clone();
            let state = state.clone();
            let cameras_list = cameras_list.clone();
            wasm_bindgen_futures::spawn_local(async move {
                match open_camera(&device).await {
                    Ok(stream) => {
                        let Some(video) = video_ref.cast::<HtmlVideoElement>() else {
                            stop_stream(&stream);
                            return;
                        };
                        video.set_muted(true);
                        video.set_src_object(Some(&stream));
                        if let Ok(p) = video.play() {
                            let _ = JsFuture::from(p).await;
                        }
                        // A track that ends (camera unplugged, or turned off by the system).
                        let listeners = stream
                            .get_video_tracks()
                            .iter()
                            .map(|t| {
                                let camera = camera.clone();
                                let state = state.clone();
                                EventListener::new(t.unchecked_ref::<web_sys::EventTarget>(), "ended", move |_| {
                                    state.borrow_mut().session += 1;
                                    camera.set(Camera::Failed(
                                        "The camera stopped (unplugged, or used by another application?). \
                                         Reconnect it and press Restart camera."
                                            .into(),
                                    ));
                                })
                            })
                            .collect();
                        {
                            let mut s = state.borrow_mut();
                            s.stream = Some(stream);
                            s._track_listeners = listeners;
                        }
                        camera.set(Camera::On);
                        cameras_list.set(cameras().await);
                    }
                    Err(e) => camera.set(Camera::Failed(e)),
                }
            })
        })
    };
    let stop = {
        let camera = camera.clone();
        let state = state.clone();
        let video_ref = video_ref.clone();
        Callback::from(move |_| {
            let mut s = state.borrow_mut();
            s.session += 1;
            if let Some(stream) = s.stream.take() {
                stop_stream(&stream);
            }
            if let Some(v) = video_ref.cast::<HtmlVideoElement>() {
                v.set_src_object(None);
            }
            camera.set(Camera::Off);
        })
    };
    let on_pick = {
        let chosen = chosen.clone();
        let start = start.clone();
        let camera = camera.clone();
        Callback::from(move |e: Event| {
            let select: HtmlSelectElement = e.target_unchecked_into();
            chosen.set(select.value());
            if *camera == Camera::On {
                start.emit(Some(select.value()));
            }
        })
    };

    let on_min_face = {
        let min_face = min_face.clone();
        Callback::from(move |e: Event| {
            let select: HtmlSelectElement = e.target_unchecked_into();
            if let Ok(v) = select.value().parse::<f64>() {
                min_face.set(v);
            }
        })
    };
    let (camera_state, message) = match &*camera {
        Camera::Off => (
            "off",
            html! { <p class="note">{ "Press Start camera. Frames are analysed in this tab and never leave it." }</p> },
        ),
        Camera::Starting => ("starting", html! { <p class="note">{ "Asking for the camera…" }</p> }),
        Camera::On if *hidden => (
            "paused",
            html! { <p class="note">{ "Paused while the tab is hidden; it resumes when you come back." }</p> },
        ),
        Camera::On if !ctx.ready() => ("on", html! { <p class="note">{ "Waiting for the models to load…" }</p> }),
        Camera::On => ("on", html! {}),
        Camera::Failed(e) => ("failed", html! { <p class="error" role="alert">{ e.clone() }</p> }),
    };
    let running = matches!(*camera, Camera::On | Camera::Starting);
    let first = view.tracks.first();
    let (top_emotion, top_p) = first.map(|t| top(&view.labels, &t.smoothed)).unwrap_or(("", 0.0));
    let backend = ctx.backend().map(|b| b.to_string()).unwrap_or_default();

    html! {
        <section class="live card" aria-label="Live camera">
            <div class="settings">
                { if running {
                    html! { <button id="camera-stop" type="button" onclick={stop}>{ "Stop camera" }</button> }
                } else {
                    let start = start.clone();
                    let label = if matches!(*camera, Camera::Failed(_)) { "Restart camera" } else { "Start camera" };
                    html! { <button id="camera-start" type="button" class="primary" onclick={move |_| start.emit(None)}>{ label }</button> }
                } }
                <label>{ "Camera " }
                    <select id="camera-select" onchange={on_pick} disabled={cameras_list.is_empty()}>
                        { if cameras_list.is_empty() { html! { <option value="">{ "default" }</option> } } else { html! {} } }
                        { for cameras_list.iter().map(|(id, label)| html! {
                            <option value={id.clone()} selected={*chosen == *id}>{ label.clone() }</option>
                        }) }
                    </select>
                </label>
                <label>{ "Faces " }
                    <select id="live-min-face" onchange={on_min_face}>
                        { for [(30.0, "far from the camera (slower)"), (48.0, "at arm's length"), (72.0, "close (fastest)")].iter().map(|(v, label)| html! {
                            <option value={v.to_string()} selected={*min_face == *v}>{ *label }</option>
                        }) }
                    </select>
                </label>
            </div>
            <div id="camera-state" data-state={camera_state}>{ message }</div>
            { if let Some(e) = &view.error { html! { <p class="error" role="alert">{ e.clone() }</p> } } else { html! {} } }
            <div class="stage" hidden={!running}>
                <video ref={video_ref} autoplay=true playsinline=true muted=true></video>
                <svg class="overlay" viewBox={format!("0 0 {} {}", view.width.max(1), view.height.max(1))} preserveAspectRatio="none">
                    { for view.tracks.iter().map(|t| track_box(t, &view.labels, view.width)) }
                </svg>
            </div>
            <canvas ref={canvas_ref} hidden=true></canvas>
            <div id="live-stats" class="stats" data-fps={format!("{:.2}", view.fps)} data-frames={view.frames.to_string()}
                data-detect-ms={format!("{:.1}", view.detect_ms)} data-follow-ms={format!("{:.1}", view.follow_ms)}
                data-classify-ms={format!("{:.1}", view.classify_ms)} data-searched={view.searched.to_string()}
                data-latency-ms={format!("{:.1}", view.latency_ms)}
                data-faces={view.tracks.len().to_string()} data-emotion={top_emotion}
                data-first-frame-ms={view.first_frame_ms.map(|t| format!("{t:.0}")).unwrap_or_default()}
                data-backend={backend.clone()}>
                <span>{ format!("{:.1} frames/s", view.fps) }</span>
                <span title="the whole frame searched for faces">{ format!("detect {:.0} ms", view.detect_ms) }</span>
                <span title="faces followed from the previous frame">{ format!("follow {:.1} ms", view.follow_ms) }</span>
                <span>{ format!("classify {:.0} ms", view.classify_ms) }</span>
                <span title="from reading a frame off the camera to its answer (median)">{ format!("latency {:.0} ms", view.latency_ms) }</span>
                <span>{ format!("{} face{}", view.tracks.len(), if view.tracks.len() == 1 { "" } else { "s" }) }</span>
                <span>{ if backend.is_empty() { "—".to_string() } else { backend } }</span>
            </div>
            { match first {
                Some(t) if !view.labels.is_empty() => html! {
                    <div class="live-face">
                        <h2>{ format!("{top_emotion} {:.0}%", 100.0 * top_p) }</h2>
                        { probability_bars(&view.labels, &t.smoothed) }
                    </div>
                },
                _ => html! {},
            } }
        </section>
    }
}

/// Calls a function for every new frame a video presents (`requestVideoFrameCallback`), so the
/// live loop takes each camera frame once: never the same frame twice, never waiting for a
/// timer. Dropping it stops the calls.
struct VideoFrames {
    video: HtmlVideoElement,
    handle: Rc<Cell<f64>>,
    callback: Rc<RefCell<Option<FrameCallback>>>,
}

/// `requestVideoFrameCallback`'s callback: `(now, metadata)`.
type FrameCallback = Closure<dyn FnMut(JsValue, JsValue)>;

impl VideoFrames {
    /// `None` where the browser has no `requestVideoFrameCallback` (the caller then compares
    /// the video's time instead).
    fn watch(video: HtmlVideoElement, on_frame: impl Fn() + 'static) -> Option<VideoFrames> {
        let request: js_sys::Function =
            Reflect::get(&video, &"requestVideoFrameCallback".into()).ok()?.dyn_into().ok()?;
        let callback: Rc<RefCell<Option<FrameCallback>>> = Rc::new(RefCell::new(None));
        let handle = Rc::new(Cell::new(0.0));
        let closure = {
            let (callback, handle, video, request) = (callback.clone(), handle.clone(), video.clone(), request.clone());
            Closure::new(move |_now: JsValue, _metadata: JsValue| {
                on_frame();
                // Asked again for the next frame, unless stopped meanwhile.
                if let Some(cb) = callback.borrow().as_ref() {
                    if let Ok(h) = request.call1(&video, cb.as_ref()) {
                        handle.set(h.as_f64().unwrap_or(0.0));
                    }
                }
            })
        };
        let first = request.call1(&video, closure.as_ref()).ok()?;
        handle.set(first.as_f64().unwrap_or(0.0));
        *callback.borrow_mut() = Some(closure);
        Some(VideoFrames { video, handle, callback })
    }
}

impl Drop for VideoFrames {
    fn drop(&mut self) {
        if let Ok(cancel) =
            Reflect::get(&self.video, &"cancelVideoFrameCallback".into()).and_then(|f| f.dyn_into::<js_sys::Function>())
        {
            let _ = cancel.call1(&self.video, &self.handle.get().into());
        }
        // Also ends the closure's reference to itself.
        self.callback.borrow_mut().take();
    }
}

/// A face's box and label. The stage is mirrored (a selfie view), so the text is mirrored back.
fn track_box(t: &Track, labels: &[Emotion], frame_width: u32) -> Html {
    let b = t.face.face.bbox;
    let stroke = (frame_width as f32 / 250.0).max(1.5);
    let font = (frame_width as f32 / 32.0).max(12.0);
    let (emotion, p) = top(labels, &t.smoothed);
    let text = if emotion.is_empty() { "face".to_string() } else { format!("{emotion} {:.0}%", 100.0 * p) };
    let bar_w = (b[2] - b[0]) * p;
    html! {
        <g class="face" data-track={t.id.to_string()}>
            <rect x={b[0].to_string()} y={b[1].to_string()} width={(b[2] - b[0]).to_string()} height={(b[3] - b[1]).to_string()}
                stroke-width={stroke.to_string()} />
            <rect class="pbar" x={(b[2] - bar_w).to_string()} y={(b[3] + stroke).to_string()} width={bar_w.max(0.0).to_string()}
                height={(stroke * 3.0).to_string()} />
            <text transform={format!("translate({} {}) scale(-1 1)", b[2], (b[1] - stroke * 2.0).max(font))}
                font-size={font.to_string()}>{ text }</text>
        </g>
    }
}

/// Sends the newest video frame to the worker if none is in flight.
fn pump(
    state: &Rc<RefCell<Loop>>,
    video_ref: &NodeRef,
    canvas_ref: &NodeRef,
    view: &UseStateHandle<LiveView>,
    ctx: &EngineContext,
    min_face: f64,
) {
    if state.borrow().in_flight >= MAX_IN_FLIGHT + ctx.worker.pool_size() as u32 {
        return;
    }
    let (Some(video), Some(canvas)) = (video_ref.cast::<HtmlVideoElement>(), canvas_ref.cast::<HtmlCanvasElement>())
    else {
        return;
    };
    // HAVE_CURRENT_DATA or better, and a known size.
    if video.ready_state() < 2 || video.video_width() == 0 {
        return;
    }
    {
        let s = state.borrow();
        let new_frame = match s.presented {
            Some(presented) => presented != s.taken,
            None => video.current_time() != s.last_sent,
        };
        if !new_frame {
            return;
        }
    }
    let (vw, vh) = (video.video_width(), video.video_height());
    let scale = (MAX_FRAME_WIDTH as f64 / vw as f64).min(1.0);
    let (w, h) = (((vw as f64 * scale).round() as u32).max(1), ((vh as f64 * scale).round() as u32).max(1));
    if canvas.width() != w || canvas.height() != h {
        canvas.set_width(w);
        canvas.set_height(h);
    }
    let Some(g) = canvas
        .get_context_with_context_options("2d", &{
            let o = Object::new();
            let _ = Reflect::set(&o, &"willReadFrequently".into(), &JsValue::TRUE);
            o.into()
        })
        .ok()
        .flatten()
        .and_then(|c| c.dyn_into::<CanvasRenderingContext2d>().ok())
    else {
        return;
    };
    if g.draw_image_with_html_video_element_and_dw_and_dh(&video, 0.0, 0.0, w as f64, h as f64).is_err() {
        return;
    }
    let Ok(image) = g.get_image_data(0.0, 0.0, w as f64, h as f64) else { return };
    // The pixels' own buffer, transferred to the worker without a copy into wasm memory.
    let Some(buffer) = Reflect::get(&image, &"data".into())
        .ok()
        .and_then(|d| Reflect::get(&d, &"buffer".into()).ok())
        .and_then(|b| b.dyn_into::<ArrayBuffer>().ok())
    else {
        return;
    };
    let (session, step, sent) = {
        let mut s = state.borrow_mut();
        s.in_flight += 1;
        s.sent += 1;
        s.last_sent = video.current_time();
        s.taken = s.presented.unwrap_or(0);
        (s.session, s.schedule.next_step(), s.sent)
    };
    // Each frame's faces are classified from one view, the crop or its mirror image in turn,
    // which the smoothing averages as the flip average of a photo does (half the classifier's
    // work on every frame).
    let views = Views::One { mirrored: sent % 2 == 1 };
    let job = (step.clone(), views);
    let read_at = now();
    let done = {
        let state = state.clone();
        let view = view.clone();
        Callback::from(move |reply: Reply| {
            let kick = {
                let s = state.borrow();
                (s.session == session).then(|| s.kick.clone()).flatten()
            };
            answer(&state, &view, (session, &step, read_at, sent), reply);
            if let Some(kick) = kick {
                // Outside any borrow: the next frame goes to the worker straight away.
                wasm_bindgen_futures::spawn_local(async move { kick() });
            }
        })
    };
    if !ctx.worker.detect_frame(buffer, (w, h), min_face as f32, job, done) {
        state.borrow_mut().in_flight -= 1;
    }
}

/// Records a worker answer to the frame of `session` read at `read_at` and sent with `step`:
/// tracks, smoothing, timings.
fn answer(
    state: &Rc<RefCell<Loop>>,
    view: &UseStateHandle<LiveView>,
    (session, step, read_at, sent): (u32, &Step, f64, u64),
    reply: Reply,
) {
    {
        {
            let mut s = state.borrow_mut();
            if s.session != session {
                return;
            }
            s.in_flight = s.in_flight.saturating_sub(1);
            let t = now();
            // With several workers, an answer can come after that of a newer frame: it is not
            // shown (the view never steps back), but a search's faces still go to the schedule,
            // so the faces that came into view are followed from the next frame on.
            if let Ok(r) = &reply {
                // Exponential moving averages of the stage times, for a steady readout.
                let ema = |old: f64, new: f64, first: bool| if first { new } else { 0.8 * old + 0.2 * new };
                if step.is_search() {
                    s.searched += 1;
                    s.detect_ms = ema(s.detect_ms, r.detect_ms, s.searched == 1);
                } else {
                    s.followed += 1;
                    s.follow_ms = ema(s.follow_ms, r.detect_ms, s.followed == 1);
                }
                s.classify_ms = ema(s.classify_ms, r.classify_ms, s.searched + s.followed == 1);
            }
            if sent < s.shown {
                if let (true, Ok(r)) = (step.is_search(), &reply) {
                    let boxes: Vec<[f32; 4]> = r.faces.iter().map(|f| f.face.bbox).collect();
                    s.schedule.answered(step, &boxes);
                }
                return;
            }
            s.shown = sent;
            match reply {
                Ok(r) => {
                    s.frames += 1;
                    s.done_at.push_back((t, t - read_at));
                    while s.done_at.front().is_some_and(|&(f, _)| t - f > 2000.0) {
                        s.done_at.pop_front();
                    }
                    let fps = if s.done_at.len() >= 2 {
                        (s.done_at.len() - 1) as f64 / ((t - s.done_at[0].0) / 1000.0).max(1e-3)
                    } else {
                        0.0
                    };
                    let mut latencies: Vec<f64> = s.done_at.iter().map(|&(_, l)| l).collect();
                    latencies.sort_by(f64::total_cmp);
                    let latency_ms = latencies[latencies.len() / 2];
                    let boxes: Vec<[f32; 4]> = r.faces.iter().map(|f| f.face.bbox).collect();
                    s.schedule.answered(step, &boxes);
                    if s.first_frame_ms.is_none() && !r.labels.is_empty() {
                        s.first_frame_ms = Some(t);
                    }
                    let tracks = s.tracker.update(r.faces, t);
                    view.set(LiveView {
                        tracks,
                        labels: r.labels,
                        width: r.width,
                        height: r.height,
                        fps,
                        detect_ms: s.detect_ms,
                        follow_ms: s.follow_ms,
                        classify_ms: s.classify_ms,
                        frames: s.frames,
                        searched: s.searched,
                        latency_ms,
                        first_frame_ms: s.first_frame_ms,
                        error: None,
                    });
                }
                Err(e) => view.set(LiveView { error: Some(e), ..(**view).clone() }),
            }
        }
    }
}
