//! One photo's card: its state, and once answered the photo with its faces boxed, their
//! landmarks, and each face's expression probabilities.

use yew::prelude::*;

use super::{Photo, Status};
use crate::widgets::{probability_bars, top};

#[derive(Properties, PartialEq)]
pub(super) struct PhotoCardProps {
    pub photo: Photo,
}

/// One photo's card. A component of its own, so a new answer re-renders its card only: with
/// hundreds of photos shown, the others (and their result JSON) are not rebuilt each time.
#[function_component(PhotoCard)]
pub(super) fn photo_card(props: &PhotoCardProps) -> Html {
    let photo = &props.photo;
    let url = photo.url.to_string();
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
                "{} · {} face{} · detect {:.0} ms, classify {:.0} ms on {}",
                photo.name,
                n,
                if n == 1 { "" } else { "s" },
                r.detect_ms,
                r.classify_ms,
                r.backend
            );
            let stroke = (r.width.max(r.height) as f32 / 300.0).max(1.0);
            let font = (r.width.max(r.height) as f32 / 28.0).max(10.0);
            html! {
                <article class="photo" key={photo.id} data-name={photo.name.clone()} data-state="done"
                    data-faces={n.to_string()} data-result={json}
                    data-answer-ms={photo.answer_ms.map(|ms| format!("{ms:.0}"))}>
                    <figure>
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
