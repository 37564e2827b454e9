//! What the pages share to show a classification: the most probable emotion and the
//! probability bars.

use mien::classify::argmax;
use mien::Emotion;
use yew::prelude::*;

/// The most probable emotion's name and probability ("" when unclassified).
pub fn top(labels: &[Emotion], probs: &[f32]) -> (&'static str, f32) {
    let n = probs.len().min(labels.len());
    if n == 0 {
        return ("", 0.0);
    }
    let i = argmax(&probs[..n]);
    (labels[i].name(), probs[i])
}

/// Probability bars of one face, most probable first.
pub fn probability_bars(labels: &[Emotion], probs: &[f32]) -> Html {
    let mut order: Vec<usize> = (0..probs.len().min(labels.len())).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    html! {
        <ul class="probs">
            { for order.into_iter().map(|i| html! {
                <li data-label={labels[i].name()} data-p={format!("{:.4}", probs[i])}>
                    <span class="label">{ labels[i].name() }</span>
                    <span class="bar"><span style={format!("width:{:.1}%", 100.0 * probs[i])}></span></span>
                    <span class="pct">{ format!("{:.0}%", 100.0 * probs[i]) }</span>
                </li>
            }) }
        </ul>
    }
}
