//! One photo's card: its state, and once answered the photo with its faces boxed, their
//! landmarks, and each face's expression probabilities.

use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use yew::prelude::*;

use super::{Photo, Status};
use crate::widgets::{probability_bars, top};

#[derive(Properties, PartialEq)]
pub(super) struct PhotoCardProps {
    pub photo: Rc<Photo>,
}

/// Whether the element behind `node` is within about two screens of the viewport, watched
/// again whenever `generation` changes (the element may then be a new one).
#[hook]
fn use_near_viewport(node: NodeRef, generation: bool) -> bool {
    let near = use_state(|| false);
    {
        let near = near.clone();
        use_effect_with((node, generation), move |(node, _)| {
            let watching = node.cast::<web_sys::Element>().and_then(|element| {
                let on_change = Closure::<dyn FnMut(js_sys::Array)>::new(move |entries: js_sys::Array| {
                    let last =
                        entries.iter().last().and_then(|e| e.dyn_into::<web_sys::IntersectionObserverEntry>().ok());
                    if let Some(entry) = last {
                        near.set(entry.is_intersecting());
                    }
                });
                let init = web_sys::IntersectionObserverInit::new();
                init.set_root_margin("2000px 0px");
                let observer =
                    web_sys::IntersectionObserver::new_with_options(on_change.as_ref().unchecked_ref(), &init).ok()?;
                observer.observe(&element);
                Some((observer, on_change))
            });
            move || {
                if let Some((observer, _on_change)) = watching {
                    observer.disconnect();
                }
            }
        });
    }
    *near
}

/// One photo's card. A component of its own, so a new answer re-renders its card only: with
/// hundreds of photos shown, the others (and their result JSON) are not rebuilt each time.
///
/// Only a card near the viewport holds its image: the browser keeps the decoded pixels of every
/// image it has shown, which grew the tab by a few megabytes a card over a batch of 200 photos.
#[function_component(PhotoCard)]
pub(super) fn photo_card(props: &PhotoCardProps) -> Html {
    let photo = &props.photo;
    let node = use_node_ref();
    let near = use_near_viewport(node.clone(), matches!(photo.status, Status::Done(_)));
    let url = near.then(|| photo.url.to_string());
    match &photo.status {
        Status::Queued => html! {
            <article class="photo" key={photo.id} data-name={photo.name.clone()} data-state="queued">
                <p class="caption">{ format!("{} · waiting", photo.name) }</p>
            </article>
        },
        Status::Cancelled => html! {
            <article class="photo" key={photo.id} data-name={photo.name.clone()} data-state="cancelled">
                <p class="caption">{ format!("{} · cancelled", photo.name) }</p>
            </article>
        },
        Status::Pending => html! {
            <article class="photo" key={photo.id} data-name={photo.name.clone()} data-state="pending">
                <p class="caption">{ format!("{} · working…", photo.name) }</p>
            </article>
        },
        Status::Failed(e) => html! {
            <article class="photo failed" key={photo.id} data-name={photo.name.clone()} data-state="error">
                <p class="caption">{ photo.name.clone() }</p>
                <p class="error" role="alert">{ e.clone() }</p>
            </article>
        },
        Status::Done(r) => {
            let json = serde_json::to_string(r).unwrap_or_default();
            let n = r.faces.len();
            let caption = format!(
                "{} · {} face{} · detect {:.0} ms{}, classify {:.0} ms on {}",
                photo.name,
                n,
                if n == 1 { "" } else { "s" },
                r.detect_ms,
                if r.shared_parts > 0 { " (two workers)" } else { "" },
                r.classify_ms,
                r.backend
            );
            let stroke = (r.width.max(r.height) as f32 / 300.0).max(1.0);
            let font = (r.width.max(r.height) as f32 / 28.0).max(10.0);
            html! {
                <article class="photo" key={photo.id} ref={node} data-name={photo.name.clone()} data-state="done"
                    data-faces={n.to_string()} data-result={json}
                    data-answer-ms={photo.answer_ms.map(|ms| format!("{ms:.0}"))}
                    data-timeline={photo.timeline.clone()}>
                    <figure style={format!("aspect-ratio: {} / {}", r.width, r.height)}>
                        <img src={url} alt={photo.name.clone()} decoding="async" loading="lazy" />
                        <svg class="overlay" viewBox={format!("0 0 {} {}", r.width, r.height)} preserveAspectRatio="none">
                            { for r.faces.iter().enumerate().map(|(i, f)| {
                                let b = f.face.bbox;
                                html! {
                                    <g class="face">
                                        <rect x={b[0].to_string()} y={b[1].to_string()}
                                            width={f.face.width().to_string()} height={f.face.height().to_string()}
                                            stroke-width={stroke.to_string()} />
                                        { for f.face.landmarks.iter().map(|p| html! {
                                            <circle cx={p[0].to_string()} cy={p[1].to_string()} r={(stroke * 2.0).to_string()} />
                                        }) }
                                        <text x={b[0].to_string()} y={(b[1] - stroke * 2.0).max(font).to_string()}
                                            font-size={font.to_string()}>{ format!("{}", i + 1) }</text>
                                    </g>
                                }
                            }) }
                        </svg>
                    </figure>
                    <p class="caption">{ caption }</p>
                    { if r.labels.is_empty() { html! {} } else { html! {
                        <ol class="faces">
                            { for r.faces.iter().map(|f| {
                                let (emotion, p) = top(&r.labels, &f.probabilities);
                                html! {
                                    <li class="face-result" data-emotion={emotion}>
                                        <strong>{ format!("{emotion} {:.0}%", 100.0 * p) }</strong>
                                        { probability_bars(&r.labels, &f.probabilities) }
                                    </li>
                                }
                            }) }
                        </ol>
                    } } }
                </article>
            }
        }
    }
}
