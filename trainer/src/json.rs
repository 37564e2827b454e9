//! JSON as the trainer writes it for the app and for people: model manifests and reports.
//!
//! Every float is cut to nine significant digits. The figures are measurements (accuracies over a
//! few thousand images, losses, seconds), so the tail of a 17-digit f64 is noise; but it does not
//! compress, and the manifest and the reports are part of what a first visit to the app downloads
//! (the CK+ cross-validation report alone shrank from 11.1 to 8.5 KB of gzip). Nine digits are
//! exact for every f32 (the crop, the normalisation), which reads back as the same number.
//! Checkpoint state is not written this way: `--resume` needs its numbers to the bit.

use serde::Serialize;
use serde_json::Value;

/// `value` pretty-printed, its floats cut to nine significant digits.
pub fn pretty<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut v = serde_json::to_value(value)?;
    round_floats(&mut v);
    serde_json::to_vec_pretty(&v)
}

/// Whether `a` and `b` are equal as [`pretty`] writes them: settings read back from a report
/// compared with a run's own, whose floats the file holds rounded (0.05 as an f32 reads back as
/// 0.0500000007, not as the 0.05000000074505806 it serialises to).
pub fn same_as_written(a: &Value, b: &Value) -> bool {
    let (mut a, mut b) = (a.clone(), b.clone());
    round_floats(&mut a);
    round_floats(&mut b);
    a == b
}

fn round_floats(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            let rounded = n.as_f64().and_then(|x| format!("{x:.8e}").parse::<f64>().ok());
            if let Some(r) = rounded.and_then(serde_json::Number::from_f64) {
                *n = r;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(round_floats),
        Value::Object(fields) => fields.values_mut().for_each(round_floats),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_keep_nine_digits_and_f32s_read_back_exactly() {
        let margin = -0.02000001_f32;
        let v = serde_json::json!({
            "accuracy": 0.6561948464525238,
            "epoch": 44,
            "big": 12345678901_u64,
            "series": [1.2585988468241154, 0.5],
            "margin": margin,
            "mean": 0.5019608_f32,
        });
        let text = String::from_utf8(pretty(&v).unwrap()).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["accuracy"], serde_json::json!(0.656194846));
        assert_eq!(back["series"], serde_json::json!([1.25859885, 0.5]));
        assert_eq!(back["epoch"], serde_json::json!(44));
        assert_eq!(back["big"], serde_json::json!(12345678901_u64));
        assert!(text.contains("\"epoch\": 44,") && !text.contains("44.0"), "{text}");
        assert_eq!(back["margin"].as_f64().unwrap() as f32, margin);
        assert_eq!(back["mean"].as_f64().unwrap() as f32, 0.5019608_f32);
        assert!(text.len() < serde_json::to_vec_pretty(&v).unwrap().len(), "{text}");
    }
}
