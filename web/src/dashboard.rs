//! The dashboard: how good the shipped model is, rendered from the trainer's JSON reports (the
//! same files `mien-trainer` writes: every figure of this project's models comes from them), and
//! an evaluation of the visitor's own labelled photos, computed in the page. The one figure
//! written here is the original study's, [`ORIGINAL_STUDY_CK_PLUS`], quoted for comparison.

use serde_json::Value;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::Response;
use yew::prelude::*;

use self::own_photos::OwnPhotos;
use self::report::{pct, report_section, total, Loaded};
use self::sections::{crop_section, cv_section, learning_curves, model_card};

mod own_photos;
mod report;
mod sections;

/// The report files the dashboard reads (written by the commands in the README).
pub const SHIPPED_REPORT: &str = "./reports/fer2013_publictest.json";
pub const CKPLUS_SHIPPED_REPORT: &str = "./reports/ckplus_shipped.json";
pub const CV_REPORT: &str = "./reports/ckplus_cv.json";
pub const CROP_REPORT: &str = "./reports/crop_check.json";
pub const MANIFEST: &str = "./assets/model/manifest.json";

/// The original study's published accuracies on CK+, in percent, as it reports them (the last
/// two: without face crops, and with MTCNN face crops; one hold-out split with subjects in both
/// train and test). Quoted from that study for comparison: not a measurement of this project.
pub const ORIGINAL_STUDY_CK_PLUS: [u32; 3] = [21, 48, 68];

async fn fetch_json(url: &str) -> Result<Value, String> {
    let window = web_sys::window().ok_or("no window")?;
    let resp = JsFuture::from(window.fetch_with_str(url)).await.map_err(|e| format!("{url}: {e:?}"))?;
    let resp: Response = resp.unchecked_into();
    if !resp.ok() {
        return Err(format!("{url} is not deployed (HTTP {})", resp.status()));
    }
    let text = JsFuture::from(resp.text().map_err(|e| format!("{e:?}"))?).await.map_err(|e| format!("{e:?}"))?;
    serde_json::from_str(&text.as_string().unwrap_or_default()).map_err(|e| format!("{url} is not valid JSON: {e}"))
}

#[hook]
fn use_json(url: &'static str) -> UseStateHandle<Loaded> {
    let state = use_state(|| None);
    {
        let state = state.clone();
        use_effect_with(url, move |url| {
            let url = *url;
            wasm_bindgen_futures::spawn_local(async move { state.set(Some(fetch_json(url).await)) });
            || ()
        });
    }
    state
}

#[function_component(Dashboard)]
pub fn dashboard() -> Html {
    let shipped = use_json(SHIPPED_REPORT);
    let ck_shipped = use_json(CKPLUS_SHIPPED_REPORT);
    let cv = use_json(CV_REPORT);
    let crop = use_json(CROP_REPORT);
    let manifest = use_json(MANIFEST);

    let ok = |l: &Loaded| l.as_ref().and_then(|r| r.as_ref().ok()).cloned();
    let headline = |id: &str, title: &str, value: Option<String>, sub: String| {
        html! {
            <div class="metric" id={id.to_string()} data-value={value.clone().unwrap_or_default()}>
                <span class="big">{ value.unwrap_or_else(|| "—".into()) }</span>
                <span class="what">{ title.to_string() }</span>
                <span class="sub">{ sub }</span>
            </div>
        }
    };
    let [first, no_crops, crops] = ORIGINAL_STUDY_CK_PLUS;
    let cv_v = ok(&cv);
    let shipped_v = ok(&shipped);
    let ck_v = ok(&ck_shipped);
    let cv_head = cv_v
        .as_ref()
        .and_then(|v| Some(format!("{} ± {}", pct(v["accuracy_mean"].as_f64()?), pct(v["accuracy_std"].as_f64()?))));
    let cv_sub = cv_v
        .as_ref()
        .map(|v| {
            format!(
                "{} subject-independent folds, CK+48 (7 classes)",
                v["folds"].as_array().map(|f| f.len()).unwrap_or(0)
            )
        })
        .unwrap_or_default();

    html! {
        <div class="dashboard">
            <section class="card">
                <h2>{ "How good is it?" }</h2>
                <div class="metrics">
                    { headline("head-cv", "CK+ cross-validation", cv_head, cv_sub) }
                    { headline("head-fer", "FER2013 PublicTest (shipped model)", shipped_v.as_ref().and_then(|v| v["accuracy"].as_f64()).map(pct),
                        shipped_v.as_ref().map(|v| format!("{} images, macro-F1 {:.3}", total(v), v["macro_f1"].as_f64().unwrap_or(0.0))).unwrap_or_default()) }
                    { headline("head-ck-shipped", "CK+ (shipped model, never trained on CK+)", ck_v.as_ref().and_then(|v| v["accuracy"].as_f64()).map(pct),
                        ck_v.as_ref().map(|v| format!("{} images, cross-dataset", total(v))).unwrap_or_default()) }
                    <div class="metric study" id="head-study">
                        <span class="big">{ format!("{first}% · {no_crops}% · {crops}%") }</span>
                        <span class="what">{ "the original study on CK+" }</span>
                        <span class="sub">{ format!("{crops}% with MTCNN face crops, {no_crops}% without; one hold-out split with subjects in both train and test") }</span>
                    </div>
                </div>
            </section>
            { report_section("shipped", "Shipped model on FER2013 PublicTest", &shipped,
                "Never used for training or model selection (validation was a seeded 10% of FER2013 train).") }
            { learning_curves(&manifest) }
            { cv_section(&cv) }
            { report_section("ck-shipped", "Shipped model on CK+48", &ck_shipped,
                "All CK+48 images of the model's labels (contempt is not among them); no CK+ subject was seen in training, so every subject is held out.") }
            { crop_section(&crop) }
            { model_card(&manifest, &shipped) }
            <OwnPhotos />
        </div>
    }
}
