//! Loading pretrained weights from safetensors bytes into burn modules, with errors that name the
//! file and the tensor, so a truncated download or a swapped file is diagnosed, not mis-run.

use burn::module::Module;
use burn_store::{ModuleAdapter, ModuleContext, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};

/// Why a weight file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("weight file {file} is missing: {reason}")]
    Missing { file: String, reason: String },
    #[error("weight file {file} is not a valid safetensors file (truncated or corrupt?): {reason}; restore it from the repository's assets/")]
    Corrupt { file: String, reason: String },
    #[error("weight file {file} lacks tensor `{tensor}` (is it the right file for this network?)")]
    MissingTensor { file: String, tensor: String },
    #[error("weight file {file}: tensor `{tensor}` does not fit the network: {reason}")]
    Mismatch { file: String, tensor: String, reason: String },
    #[error("weight file {file} holds tensor `{tensor}` that the network does not have (is it the right file for this network?)")]
    Unexpected { file: String, tensor: String },
}

/// PyTorch names a PReLU slope `weight`; burn's `PRelu` calls it `alpha`.
#[derive(Clone)]
struct PReluWeightAsAlpha;

impl ModuleAdapter for PReluWeightAsAlpha {
    fn adapt(&self, t: burn_store::burn_pack::Tensor, _ctx: ModuleContext<'_>) -> burn_store::burn_pack::Tensor {
        t
    }

    fn get_alternative_param_name(&self, param: &str, module_type: &str) -> Option<String> {
        (module_type == "Struct:PRelu" && param == "alpha").then(|| "weight".to_string())
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

/// Loads PyTorch-layout safetensors `bytes` (named `file` in messages) into `module`.
///
/// Every tensor of the module must be present with its shape, and the file must hold nothing
/// else: a partial or foreign file is an error, never a silently half-initialised network.
pub fn load_pytorch_safetensors<M: Module>(mut module: M, bytes: &[u8], file: &str) -> Result<M, WeightsError> {
    if bytes.is_empty() {
        return Err(WeightsError::Corrupt { file: file.into(), reason: "the file is empty".into() });
    }
    // Parse the header first: a truncated file is reported as such, before any tensor is touched.
    let bytes = dequantize(bytes, file)?;
    let mut store = SafetensorsStore::from_bytes(Some(bytes.into_owned()))
        .with_from_adapter(PyTorchToBurnAdapter.chain(PReluWeightAsAlpha))
        .allow_partial(true)
        .validate(false);
    let result =
        module.load_from(&mut store).map_err(|e| WeightsError::Corrupt { file: file.into(), reason: e.to_string() })?;
    if let Some(err) = result.errors.first() {
        use burn_store::ApplyError as E;
        let (tensor, reason) = match err {
            E::ShapeMismatch { path, expected, found } => {
                (path, format!("expected shape {expected:?}, found {found:?}"))
            }
            E::DTypeMismatch { path, expected, found } => (path, format!("expected {expected:?}, found {found:?}")),
            E::AdapterError { path, message } | E::LoadError { path, message } => (path, message.clone()),
            #[allow(unreachable_patterns)]
            other => return Err(WeightsError::Corrupt { file: file.into(), reason: format!("{other:?}") }),
        };
        return Err(WeightsError::Mismatch { file: file.into(), tensor: pytorch_name(tensor), reason });
    }
    if let Some((path, _)) = result.missing.first() {
        return Err(WeightsError::MissingTensor { file: file.into(), tensor: pytorch_name(path) });
    }
    if let Some(tensor) = result.unused.first() {
        return Err(WeightsError::Unexpected { file: file.into(), tensor: tensor.clone() });
    }
    Ok(module)
}

/// Writes `module` as PyTorch-layout f32 safetensors, the layout [`load_pytorch_safetensors`]
/// reads: linear weights transposed to `[out, in]`, PReLU slopes named `weight`. A network
/// fine-tuned here is then stored like the pretrained file it started from.
pub fn save_pytorch_safetensors<M: Module>(module: &M, file: &str) -> Result<Vec<u8>, WeightsError> {
    use burn_store::BurnToPyTorchAdapter;
    use safetensors::SafeTensors;
    let mut store = SafetensorsStore::from_bytes(None).with_to_adapter(BurnToPyTorchAdapter);
    module.save_into(&mut store).map_err(|e| corrupt(file, format!("{e:?}")))?;
    let bytes = store.get_bytes().map_err(|e| corrupt(file, format!("{e:?}")))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(file, e))?;
    let owned: Vec<OwnedTensor<'_>> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| (pytorch_name(&name), view.dtype(), view.shape().to_vec(), view.data().into()))
        .collect();
    write_safetensors(&owned, None, file)
}

fn pytorch_name(burn_path: &str) -> String {
    burn_path.strip_suffix(".alpha").map(|p| format!("{p}.weight")).unwrap_or_else(|| burn_path.to_string())
}

/// Validates the safetensors framing: 8-byte header length, JSON header, and that every tensor's
/// byte range lies inside the file.
pub(crate) fn check_safetensors(bytes: &[u8], file: &str) -> Result<(), WeightsError> {
    let corrupt = |reason: String| WeightsError::Corrupt { file: file.into(), reason };
    if bytes.len() < 8 {
        return Err(corrupt(format!("only {} bytes", bytes.len())));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header = bytes
        .get(8..8usize.saturating_add(n))
        .ok_or_else(|| corrupt(format!("header of {n} bytes but the file has {}", bytes.len())))?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| corrupt(format!("header is not JSON: {e}")))?;
    let data_len = bytes.len() - 8 - n;
    for (name, info) in &header {
        if name == "__metadata__" {
            continue;
        }
        let end = info
            .get("data_offsets")
            .and_then(|o| o.get(1))
            .and_then(|v| v.as_u64())
            .ok_or_else(|| corrupt(format!("tensor `{name}` has no data_offsets")))?;
        if end as usize > data_len {
            return Err(WeightsError::Corrupt {
                file: file.into(),
                reason: format!(
                    "tensor `{name}` ends at byte {end} but only {data_len} data bytes are present (truncated)"
                ),
            });
        }
    }
    Ok(())
}

/// Name suffix of the per-channel scales stored beside an int8 tensor `name`: `name.q8_scale`.
pub const SCALE_SUFFIX: &str = ".q8_scale";

/// Tensors with fewer elements than this stay f32 when compacting: biases, PReLU slopes and
/// batch-norm statistics are a rounding error of the download but sensitive to rounding.
pub const COMPACT_MIN_ELEMENTS: usize = 256;

/// Weight tensors with at least this many elements are stored as int8, smaller ones as f16. The
/// large ones are the fully connected layers (O-Net's 1152→256, R-Net's 576→128), whose outputs
/// sum so many products that per-channel int8 rounding averages out. With int8 everywhere, P-Net
/// and R-Net outputs on the golden inputs moved by up to 0.028; with f16 in the small layers, by
/// at most 0.0017.
pub const INT8_MIN_ELEMENTS: usize = 65_536;

/// The expression classifier's threshold: every weight tensor of 1,024+ elements is int8 too (the
/// 1×1 convolutions, the later 3×3 depthwise ones, the head), only the stem and the first blocks'
/// small convolutions stay f16. The width-1.25 network's file shrinks by a fifth (468 → 373 KB),
/// which keeps a first visit under 4 MB; PublicTest accuracy moved by less than 0.2 points
/// (docs/MEASUREMENTS.md, on the download).
pub const CLASSIFIER_INT8_MIN_ELEMENTS: usize = 1_024;

fn corrupt(file: &str, reason: impl std::fmt::Display) -> WeightsError {
    WeightsError::Corrupt { file: file.into(), reason: reason.to_string() }
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Compacts the f32 weight tensors of a safetensors file for download: tensors of
/// `int8_min_elements` or more ([`INT8_MIN_ELEMENTS`] for MTCNN, [`CLASSIFIER_INT8_MIN_ELEMENTS`]
/// for the expression classifier) become int8 with one scale per slice of the first axis (per
/// output channel for PyTorch and burn layers: `w ≈ q · scale`, `scale = max|w| / 127`, each
/// weight off by at most half a step of its own channel); smaller weight tensors become f16;
/// tensors of rank < 2 or under [`COMPACT_MIN_ELEMENTS`] elements stay as they are.
///
/// The shipped weights are stored this way because f32 weights barely compress and a first visit
/// downloads them all: it cuts the weight download to about a third. [`dequantize`] undoes it at load.
pub fn quantize(bytes: &[u8], file: &str, int8_min_elements: usize) -> Result<Vec<u8>, WeightsError> {
    use safetensors::{Dtype, SafeTensors};
    check_safetensors(bytes, file)?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| corrupt(file, e))?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| corrupt(file, e))?;
    let mut owned: Vec<OwnedTensor<'_>> = Vec::new();
    for (name, view) in st.tensors() {
        if name.ends_with(SCALE_SUFFIX) {
            return Err(corrupt(file, format!("tensor `{name}` is already quantised")));
        }
        let shape = view.shape().to_vec();
        let n: usize = shape.iter().product();
        if view.dtype() != Dtype::F32 || shape.len() < 2 || n < COMPACT_MIN_ELEMENTS {
            owned.push((name, view.dtype(), shape, view.data().into()));
            continue;
        }
        let w = f32s(view.data());
        if let Some(bad) = w.iter().find(|x| !x.is_finite()) {
            return Err(WeightsError::Mismatch { file: file.into(), tensor: name, reason: format!("holds {bad}") });
        }
        if n < int8_min_elements {
            let f16: Vec<u8> = w.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect();
            owned.push((name, Dtype::F16, shape, f16.into()));
            continue;
        }
        let per = n / shape[0];
        let mut q = Vec::with_capacity(n);
        let mut scales = Vec::with_capacity(shape[0] * 4);
        for channel in w.chunks_exact(per) {
            let max = channel.iter().fold(0f32, |m, x| m.max(x.abs()));
            let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            q.extend(channel.iter().map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8 as u8));
            scales.extend_from_slice(&scale.to_le_bytes());
        }
        owned.push((format!("{name}{SCALE_SUFFIX}"), Dtype::F32, vec![shape[0]], scales.into()));
        owned.push((name, Dtype::I8, shape, q.into()));
    }
    let mut info = meta.metadata().clone().unwrap_or_default();
    info.insert(
        "mien_quantization".into(),
        format!("f16, or int8 with one f32 scale per slice of axis 0 in `<name>{SCALE_SUFFIX}` for tensors of {int8_min_elements}+ elements"),
    );
    write_safetensors(&owned, Some(info), file)
}

/// A tensor to write: name, dtype, shape and little-endian bytes.
type OwnedTensor<'a> = (String, safetensors::Dtype, Vec<usize>, std::borrow::Cow<'a, [u8]>);

fn write_safetensors(
    tensors: &[OwnedTensor<'_>],
    info: Option<std::collections::HashMap<String, String>>,
    file: &str,
) -> Result<Vec<u8>, WeightsError> {
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| corrupt(file, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = safetensors::serialize(views, info).map_err(|e| corrupt(file, e))?;
    canonical_header(bytes).map_err(|e| corrupt(file, e))
}

/// `safetensors::serialize` writes the metadata map in hash order; sorting every JSON object of
/// the header makes the same weights always give the same bytes, so a shipped file can be checked
/// against a fresh quantisation of its source.
fn canonical_header(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    fn sorted(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<_> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
            }
            other => other,
        }
    }
    let n = u64::from_le_bytes(bytes.get(..8).ok_or("no header")?.try_into().map_err(|_| "no header")?) as usize;
    let header = bytes.get(8..8 + n).ok_or("header out of range")?;
    let header: serde_json::Value = serde_json::from_slice(header).map_err(|e| e.to_string())?;
    let mut text = serde_json::to_string(&sorted(header)).map_err(|e| e.to_string())?;
    // safetensors pads the header with spaces so the data starts 8-byte aligned.
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    Ok(out)
}

/// Turns a file written by [`quantize`] (f16 and int8 tensors) back into plain f32 safetensors (other files are
/// returned as they are), checking each int8 tensor against its scales so that a damaged file is
/// an error naming the tensor, never a silently wrong network.
pub fn dequantize<'a>(bytes: &'a [u8], file: &str) -> Result<std::borrow::Cow<'a, [u8]>, WeightsError> {
    use safetensors::{Dtype, SafeTensors};
    check_safetensors(bytes, file)?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| corrupt(file, e))?;
    let tensors = st.tensors();
    if !tensors.iter().any(|(_, v)| matches!(v.dtype(), Dtype::I8 | Dtype::F16)) {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| corrupt(file, e))?;
    let mut owned: Vec<OwnedTensor<'_>> = Vec::new();
    for (name, view) in &tensors {
        if let Some(base) = name.strip_suffix(SCALE_SUFFIX) {
            if !tensors.iter().any(|(n, v)| n == base && v.dtype() == Dtype::I8) {
                return Err(WeightsError::Unexpected { file: file.into(), tensor: name.clone() });
            }
            continue;
        }
        if view.dtype() == Dtype::F16 {
            let data: Vec<u8> = view
                .data()
                .chunks_exact(2)
                .flat_map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32().to_le_bytes())
                .collect();
            owned.push((name.clone(), Dtype::F32, view.shape().to_vec(), data.into()));
            continue;
        }
        if view.dtype() != Dtype::I8 {
            owned.push((name.clone(), view.dtype(), view.shape().to_vec(), view.data().into()));
            continue;
        }
        let scale_name = format!("{name}{SCALE_SUFFIX}");
        let scales = tensors
            .iter()
            .find(|(n, _)| *n == scale_name)
            .map(|(_, v)| v)
            .ok_or_else(|| WeightsError::MissingTensor { file: file.into(), tensor: scale_name.clone() })?;
        let shape = view.shape().to_vec();
        let Some(&channels) = shape.first() else {
            return Err(WeightsError::Mismatch {
                file: file.into(),
                tensor: name.clone(),
                reason: "an int8 tensor needs at least one axis".into(),
            });
        };
        let mismatch =
            |reason: String| WeightsError::Mismatch { file: file.into(), tensor: scale_name.clone(), reason };
        if scales.dtype() != Dtype::F32 || scales.shape() != [channels] {
            return Err(mismatch(format!(
                "expected {channels} f32 scales, found {:?} of shape {:?}",
                scales.dtype(),
                scales.shape()
            )));
        }
        let scales = f32s(scales.data());
        if let Some(bad) = scales.iter().find(|s| !s.is_finite() || **s <= 0.0) {
            return Err(mismatch(format!("holds the scale {bad}")));
        }
        let per = shape.iter().skip(1).product::<usize>().max(1);
        let data: Vec<u8> = view
            .data()
            .iter()
            .enumerate()
            .flat_map(|(i, q)| ((*q as i8) as f32 * scales[i / per]).to_le_bytes())
            .collect();
        owned.push((name.clone(), Dtype::F32, shape, data.into()));
    }
    let info = meta.metadata().clone().map(|mut m| {
        m.remove("mien_quantization");
        m
    });
    write_safetensors(&owned, info, file).map(std::borrow::Cow::Owned)
}
