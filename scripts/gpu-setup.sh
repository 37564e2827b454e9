# Sourced by gpu-train.sh and gpu-fit.sh, from the repository root, on a GPU machine: puts what
# `cargo xtask gpu-bundle` packed in .device/ in place and exports the driver's files, so that
# the trainer these scripts then run (`$trainer`) finds the GPU through wgpu's Vulkan backend.
# It is for a machine with an NVIDIA driver but no Vulkan loader, no cargo and no network.
bundle=.device
[ -f "$bundle/mien-trainer.xz" ] || { echo "no $bundle/mien-trainer.xz: run \`cargo xtask gpu-bundle\` first" >&2; exit 2; }

# The Vulkan loader (libvulkan1) and glvnd's dispatch libraries as .debs, unpacked into / (run
# as root). NVIDIA's Vulkan driver is libGLX_nvidia, which loads glvnd's libraries; its ICD file
# is under the driver's own prefix. Exported here, so in the shell that runs the trainer: on an
# H200 machine (2026-12-04, 77632a6) the trainer found no adapter until then.
for f in "$bundle"/debs/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] || icd=$(find / -xdev -name 'nvidia_icd*.json' 2>/dev/null | head -n 1)
if [ -n "$icd" ] && [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; fi
egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
if [ -f "$egl" ]; then export __EGL_VENDOR_LIBRARY_FILENAMES="$egl"; fi
echo "gpu-setup: Vulkan driver file: ${icd:-none}" >&2

trainer=.gpu-work/bin/mien-trainer
mkdir -p .gpu-work/bin
xz -dc "$bundle/mien-trainer.xz" >"$trainer"
chmod +x "$trainer"

data=.gpu-work/data
if [ ! -d "$data/fer2013" ]; then
  mkdir -p "$data"
  tar -xJf "$bundle/data.tar.xz" -C "$data"
fi
nvidia-smi -L >&2 2>/dev/null || true
