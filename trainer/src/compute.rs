//! Where training and evaluation run: a GPU through wgpu (Vulkan, Metal or DX12) when the
//! machine has one, burn's CPU backend otherwise. The same command then trains on a laptop, on
//! this project's 2-core machines and on a GPU machine, only faster on the last.
//!
//! The choice is made once per process ([`select`], from the CLI's `--device`): a wgpu runtime
//! can be initialised only once, and every later tensor must live on the device the first one
//! chose. Library code asks [`device`]; where nothing was selected (tests, other callers) it
//! gets the CPU, as before.

use std::sync::OnceLock;

use burn::prelude::Device;

/// What `--device` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// A hardware GPU if wgpu finds one, else the CPU. A software adapter (llvmpipe, lavapipe,
    /// SwiftShader) is slower than burn's CPU backend, so it is not chosen.
    Auto,
    /// burn's CPU backend (flex, every core).
    Cpu,
    /// The GPU wgpu picks (a software adapter too); an error where there is none.
    Gpu,
}

/// The device in use and how to say which it is.
#[derive(Debug, Clone)]
pub struct Compute {
    pub device: Device,
    /// For progress output and reports: "CPU (burn flex)" or the adapter's name and API.
    pub description: String,
}

static SELECTED: OnceLock<Compute> = OnceLock::new();

fn cpu() -> Compute {
    Compute { device: Device::flex(), description: "CPU (burn flex)".to_string() }
}

/// Picks the device for this process. A second call returns the first call's choice.
pub fn select(choice: DeviceChoice) -> Result<&'static Compute, String> {
    if let Some(c) = SELECTED.get() {
        return Ok(c);
    }
    let compute = match choice {
        DeviceChoice::Cpu => cpu(),
        DeviceChoice::Gpu => gpu(false)?,
        DeviceChoice::Auto => gpu(true).unwrap_or_else(|why| {
            eprintln!("device: no usable GPU ({why}); training on the CPU");
            cpu()
        }),
    };
    Ok(SELECTED.get_or_init(|| compute))
}

/// The selected device, or the CPU where none was selected.
pub fn device() -> Device {
    SELECTED.get().map(|c| c.device.clone()).unwrap_or_else(Device::flex)
}

/// How the selected device is named in progress output and reports.
pub fn description() -> String {
    SELECTED.get().map(|c| c.description.clone()).unwrap_or_else(|| cpu().description)
}

#[cfg(feature = "gpu")]
fn gpu(hardware_only: bool) -> Result<Compute, String> {
    use burn::tensor::wgpu::wgpu::DeviceType;
    // A panic inside an adapter probe (a broken driver) must not take the CLI down with it.
    let probe = std::panic::catch_unwind(|| Device::wgpu_options().init_with_setup());
    let (device, setup) = match probe {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => return Err(format!("wgpu: {e}")),
        Err(_) => return Err("wgpu panicked while looking for an adapter".to_string()),
    };
    let info = setup.adapter.get_info();
    if hardware_only && info.device_type == DeviceType::Cpu {
        return Err(format!(
            "the only adapter is a software renderer, {} (use --device gpu to train on it anyway)",
            info.name
        ));
    }
    Ok(Compute { device, description: format!("GPU: {} ({:?}, {:?})", info.name, info.backend, info.device_type) })
}

#[cfg(not(feature = "gpu"))]
fn gpu(_hardware_only: bool) -> Result<Compute, String> {
    Err("this mien-trainer was built without the `gpu` feature".to_string())
}
