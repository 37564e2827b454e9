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
    check_safetensors(bytes, file)?;
    let mut store = SafetensorsStore::from_bytes(Some(bytes.to_vec()))
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
