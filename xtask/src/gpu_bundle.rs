//! `cargo xtask gpu-bundle`: what training on a GPU machine without cargo or network needs.

use std::path::{Path, PathBuf};

use crate::{cmd, output_of, root, run, trainer_binary, Result};

/// Fills `.device/` (git-ignored) with what `scripts/gpu-train.sh` needs on a GPU machine
/// that has no cargo, no network and no Vulkan loader: the trainer binary of this checkout (the
/// dev profile every reported number was measured with, symbols stripped, xz-compressed), the
/// datasets as one xz tarball (FER2013's JPEGs share their headers, so xz takes a third off), and Debian's
/// libvulkan1 with glvnd's libraries. Prints the size of what is to be copied there
/// (the repository's tracked files and `.device/`).
pub fn gpu_bundle(args: &[String]) -> Result {
    let data = args.iter().position(|a| a == "--data").and_then(|i| args.get(i + 1)).map(PathBuf::from);
    let data = data.unwrap_or_else(|| root().join("../shared/data"));
    for needed in ["fer2013/train", "fer2013/test", "ferplus/fer2013new.csv", "ckplus/CK+48"] {
        if !data.join(needed).exists() {
            return Err(format!(
                "{} is missing (give the datasets folder with --data DIR)",
                data.join(needed).display()
            ));
        }
    }
    let bundle = root().join(".device");
    std::fs::create_dir_all(bundle.join("debs")).map_err(|e| format!("cannot create {}: {e}", bundle.display()))?;
    let trainer = trainer_binary()?;
    let binary = bundle.join("mien-trainer");
    std::fs::copy(&trainer, &binary).map_err(|e| format!("copying {}: {e}", trainer.display()))?;
    run(cmd("strip").arg(&binary))?;
    // 72 MB stripped, 12 MB as xz: the difference between fitting the call's limit or not.
    run(cmd("xz").args(["-9", "-T0", "-f"]).arg(&binary))?;
    let tarball = bundle.join("data.tar.xz");
    if !tarball.exists() {
        let mut c = cmd("tar");
        c.env("XZ_OPT", "-6 -T0").arg("-cJf").arg(&tarball).arg("-C").arg(&data).args([
            "fer2013/train",
            "fer2013/test",
            "fer2013/fer2013_row_alignment.csv",
            "ferplus/fer2013new.csv",
            "ferplus/LICENSE-FERPlus.md",
            "ckplus/CK+48",
        ]);
        run(&mut c)?;
    }
    // The Vulkan loader, and glvnd's dispatch libraries that NVIDIA's Vulkan driver
    // (libGLX_nvidia) loads: on an NVIDIA H200 machine (2026-12-04) wgpu found the GPU only with these.
    let has_glvnd = std::fs::read_dir(bundle.join("debs"))
        .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("libglvnd0_")))
        .unwrap_or(false);
    if !has_glvnd {
        let mut c = cmd("apt-get");
        c.args(["download", "libvulkan1", "libglvnd0", "libegl1", "libgl1", "libglx0", "libgles2", "libopengl0"])
            .current_dir(bundle.join("debs"));
        run(&mut c)?;
    }
    let size = |p: &Path| {
        output_of("du", &["-sb", &p.to_string_lossy()]).and_then(|o| o.split_whitespace().next()?.parse::<u64>().ok())
    };
    let bundle_bytes = size(&bundle).unwrap_or(0);
    let tracked = output_of("git", &["ls-files", "-z"])
        .map(|o| {
            o.split('\0')
                .filter(|f| !f.is_empty())
                .filter_map(|f| std::fs::metadata(root().join(f)).ok())
                .map(|m| m.len())
                .sum::<u64>()
        })
        .unwrap_or(0);
    let total = bundle_bytes + tracked;
    eprintln!(
        "xtask: .device/ {:.1} MiB + tracked files {:.1} MiB = {:.1} MiB to copy to the GPU machine",
        bundle_bytes as f64 / 1048576.0,
        tracked as f64 / 1048576.0,
        total as f64 / 1048576.0
    );
    eprintln!("xtask: copy the repository with .device/ to the GPU machine and run there `bash scripts/gpu-train.sh train --data .gpu-work/data/fer2013 --out OUT ...`");
    Ok(())
}
