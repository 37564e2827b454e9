//! The camera: opening it (with a message that says what to do when that fails), listing the
//! cameras, stopping a stream.

use js_sys::{Object, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{MediaDeviceInfo, MediaDeviceKind, MediaStream, MediaStreamConstraints, MediaStreamTrack};

fn camera_error(e: &JsValue) -> String {
    let name = Reflect::get(e, &"name".into()).ok().and_then(|n| n.as_string()).unwrap_or_default();
    match name.as_str() {
        "NotAllowedError" | "SecurityError" => "Camera access was denied. Allow the camera for this page in the \
            browser's site settings (the icon in the address bar), then press Start camera again."
            .into(),
        "NotFoundError" | "OverconstrainedError" => {
            "No camera was found. Connect one and press Start camera, or use the Photos page instead.".into()
        }
        "NotReadableError" | "AbortError" => "The camera could not be started: another application may be using \
            it. Close that application and press Start camera again."
            .into(),
        _ => format!("The camera could not be started ({name}). Press Start camera to try again."),
    }
}

pub async fn open_camera(device_id: &str) -> Result<MediaStream, String> {
    let devices =
        web_sys::window().ok_or("no window")?.navigator().media_devices().map_err(|_| {
            "This browser gives pages no camera access here (it needs https:// or localhost).".to_string()
        })?;
    let video = Object::new();
    let ideal = |v: u32| {
        let o = Object::new();
        let _ = Reflect::set(&o, &"ideal".into(), &JsValue::from(v));
        o
    };
    let _ = Reflect::set(&video, &"width".into(), &ideal(640));
    let _ = Reflect::set(&video, &"height".into(), &ideal(480));
    if !device_id.is_empty() {
        let exact = Object::new();
        let _ = Reflect::set(&exact, &"exact".into(), &device_id.into());
        let _ = Reflect::set(&video, &"deviceId".into(), &exact);
    }
    let constraints = MediaStreamConstraints::new();
    constraints.set_video(&video);
    constraints.set_audio(&JsValue::FALSE);
    let promise = devices.get_user_media_with_constraints(&constraints).map_err(|e| camera_error(&e))?;
    let stream = JsFuture::from(promise).await.map_err(|e| camera_error(&e))?;
    Ok(stream.unchecked_into())
}

/// The cameras the browser lists (labels appear once access was granted).
pub async fn cameras() -> Vec<(String, String)> {
    let Some(devices) = web_sys::window().and_then(|w| w.navigator().media_devices().ok()) else { return Vec::new() };
    let Ok(promise) = devices.enumerate_devices() else { return Vec::new() };
    let Ok(list) = JsFuture::from(promise).await else { return Vec::new() };
    let list: js_sys::Array = list.unchecked_into();
    list.iter()
        .map(|d| d.unchecked_into::<MediaDeviceInfo>())
        .filter(|d| d.kind() == MediaDeviceKind::Videoinput)
        .enumerate()
        .map(|(i, d)| {
            let label = if d.label().is_empty() { format!("Camera {}", i + 1) } else { d.label() };
            (d.device_id(), label)
        })
        .collect()
}

pub fn stop_stream(stream: &MediaStream) {
    for t in stream.get_tracks().iter() {
        t.unchecked_into::<MediaStreamTrack>().stop();
    }
}
