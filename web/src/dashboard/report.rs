//! A report of the trainer's, rendered: its confusion matrix (counts or row-normalised), its
//! per-class table, and the card shown while a report loads or when it is not deployed.

use std::rc::Rc;

use mien::metrics::Report;
use serde_json::Value;
use yew::prelude::*;

/// A fetched JSON file, or why it is not there.
pub type Loaded = Option<Result<Value, String>>;

pub fn report_of(v: &Value) -> Result<Report, String> {
    Report::from_value(v).map_err(|e| e.to_string())
}

/// The same evaluation without the test images that have a byte-identical copy in training
/// (FER2013 has 280 such PublicTest images), where the report has it.
fn without_training_copies(v: &Value) -> Html {
    let w = &v["meta"]["without_training_copies"];
    match (w["accuracy"].as_f64(), w["images"].as_u64(), w["images_left_out"].as_u64()) {
        (Some(acc), Some(n), Some(out)) => html! {
            <p class="note without-copies" data-accuracy={format!("{acc:.6}")}>
                { format!("Without the {out} test images that also appear, byte for byte, in the training split: accuracy {} on {n} images.", pct(acc)) }
            </p>
        },
        _ => html! {},
    }
}

pub fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

pub fn total(v: &Value) -> u64 {
    v["confusion_matrix"]
        .as_array()
        .map(|r| r.iter().flat_map(|r| r.as_array().cloned().unwrap_or_default()).filter_map(|c| c.as_u64()).sum())
        .unwrap_or(0)
}

pub fn missing(id: &str, title: &str, l: &Loaded) -> Option<Html> {
    match l {
        None => Some(
            html! { <section class="card" id={id.to_string()}><h2>{ title.to_string() }</h2><p class="note">{ "Loading…" }</p></section> },
        ),
        Some(Err(e)) => Some(html! {
            <section class="card" id={id.to_string()} data-state="missing"><h2>{ title.to_string() }</h2>
                <p class="note">{ format!("Not available: {e}. The README says which command writes it.") }</p></section>
        }),
        Some(Ok(_)) => None,
    }
}

pub fn report_section(id: &str, title: &str, l: &Loaded, how: &str) -> Html {
    if let Some(h) = missing(id, title, l) {
        return h;
    }
    let Some(Ok(v)) = l else { return html! {} };
    match report_of(v) {
        Ok(r) => html! {
            <section class="card" id={id.to_string()} data-accuracy={format!("{:.6}", r.accuracy)} data-macro-f1={format!("{:.6}", r.macro_f1)}>
                <h2>{ title.to_string() }</h2>
                <p class="note">{ how.to_string() }</p>
                <p>{ format!("Accuracy {} · macro-F1 {:.3} · {} images", pct(r.accuracy), r.macro_f1, total(v)) }</p>
                { without_training_copies(v) }
                <ReportView report={Rc::new(r)} />
            </section>
        },
        Err(e) => {
            html! { <section class="card" id={id.to_string()}><h2>{ title.to_string() }</h2><p class="error">{ e }</p></section> }
        }
    }
}

#[derive(Properties, PartialEq)]
pub struct ReportProps {
    pub report: Rc<Report>,
}

/// Confusion-matrix heat map (counts or row-normalised) and the per-class table.
#[function_component(ReportView)]
pub fn report_view(props: &ReportProps) -> Html {
    let normalised = use_state(|| false);
    let r = &props.report;
    let toggle = {
        let normalised = normalised.clone();
        Callback::from(move |_| normalised.set(!*normalised))
    };
    html! {
        <div class="report">
            <div class="matrix-wrap">
                <button type="button" class="small" onclick={toggle}>
                    { if *normalised { "Show counts" } else { "Show row-normalised" } }
                </button>
                { confusion_table(&r.labels, &r.confusion_matrix, *normalised) }
            </div>
            <table class="per-class">
                <thead><tr><th>{ "label" }</th><th>{ "precision" }</th><th>{ "recall" }</th><th>{ "F1" }</th><th>{ "support" }</th></tr></thead>
                <tbody>
                    { for r.labels.iter().filter_map(|l| r.per_class.get(l).map(|c| (l, c))).map(|(l, c)| html! {
                        <tr data-label={l.clone()}>
                            <th>{ l.clone() }</th>
                            <td>{ format!("{:.3}", c.precision) }</td><td>{ format!("{:.3}", c.recall) }</td>
                            <td>{ format!("{:.3}", c.f1) }</td><td>{ c.support.to_string() }</td>
                        </tr>
                    }) }
                </tbody>
            </table>
        </div>
    }
}

/// Rows = true label, columns = predicted; cell shade = row share.
pub fn confusion_table(labels: &[String], counts: &[Vec<u64>], normalised: bool) -> Html {
    html! {
        <table class="confusion" aria-label="Confusion matrix: rows are true labels, columns predicted labels">
            <thead><tr><th>{ "true \\ predicted" }</th>{ for labels.iter().map(|l| html! { <th>{ short(l) }</th> }) }</tr></thead>
            <tbody>
                { for labels.iter().zip(counts).map(|(l, row)| {
                    let sum: u64 = row.iter().sum();
                    html! {
                        <tr>
                            <th>{ l.clone() }</th>
                            { for row.iter().map(|&c| {
                                let share = if sum == 0 { 0.0 } else { c as f64 / sum as f64 };
                                let text = if normalised { format!("{:.0}%", 100.0 * share) } else { c.to_string() };
                                let style = format!("background: rgba(47,111,237,{:.3}); color: {}", share, if share > 0.55 { "#fff" } else { "inherit" });
                                html! { <td class="cell" data-count={c.to_string()} style={style}>{ text }</td> }
                            }) }
                        </tr>
                    }
                }) }
            </tbody>
        </table>
    }
}

fn short(l: &str) -> String {
    l.chars().take(5).collect()
}
