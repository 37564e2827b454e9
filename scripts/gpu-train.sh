#!/usr/bin/env bash
# Runs a mien-trainer command on a lent GPU machine (the `device` tool of this workplace), from
# what `cargo xtask gpu-bundle` put in .device/: the trainer binary built here, the datasets and
# the Vulkan loader. That machine has an NVIDIA driver but no Vulkan loader, no cargo and no
# network; the trainer's `--device auto` then finds the GPU through wgpu's Vulkan backend.
#
# Usage (the device tool's command, with carry [".device"]): the trainer's own arguments, with
# the datasets unpacked under .gpu-work/data (git-ignored: fer2013, ferplus, ckplus/CK+48) and
# the model under $OUT/model so that it and its checkpoints come back with the reply:
#   bash scripts/gpu-train.sh train --data .gpu-work/data/fer2013 --out $OUT/model --epochs 60 ...
# Checkpoint files of an earlier reply copied into .device/resume/ (state.json, last-*, best-*,
# optimizer-*) are put back into $OUT/model/checkpoints first, so `--resume` continues that run.
# The whole log is $OUT/train.log.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=.device
[ -f "$bundle/mien-trainer.xz" ] || { echo "no $bundle/mien-trainer.xz: run \`cargo xtask gpu-bundle\` first" >&2; exit 2; }
out="${OUT:-.gpu-work/out}"
mkdir -p "$out/model/checkpoints"

# The Vulkan loader (libvulkan1) as a .deb, unpacked into / (the machine runs commands as root).
for f in "$bundle"/debs/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
ldconfig
# NVIDIA's Vulkan driver is libGLX_nvidia, which needs glvnd's dispatch libraries (libglvnd0 and
# the others `cargo xtask gpu-bundle` downloads); its ICD file is under the driver's own prefix.
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] || icd=$(find / -xdev -name 'nvidia_icd*.json' 2>/dev/null | head -n 1)
[ -n "$icd" ] && [ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -f "$egl" ] && export __EGL_VENDOR_LIBRARY_FILENAMES="$egl"

trainer=.gpu-work/bin/mien-trainer
mkdir -p .gpu-work/bin
xz -dc "$bundle/mien-trainer.xz" >"$trainer"
chmod +x "$trainer"

data=.gpu-work/data
if [ ! -d "$data/fer2013" ]; then
  mkdir -p "$data"
  tar -xJf "$bundle/data.tar.xz" -C "$data"
fi
if [ -d "$bundle/resume" ]; then
  cp "$bundle"/resume/* "$out/model/checkpoints/" 2>/dev/null || true
fi
nvidia-smi -L 2>/dev/null || true

"$trainer" "$@" 2>&1 | tee "$out/train.log"
