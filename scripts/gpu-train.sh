#!/usr/bin/env bash
# Runs a mien-trainer command on a GPU machine without Rust, from what `cargo xtask gpu-bundle`
# put in .device/ on another machine: the trainer binary built there, the datasets and the Vulkan
# loader, set up by gpu-setup.sh; the trainer's `--device auto` then finds the GPU through wgpu's
# Vulkan backend. See docs/TRAINING.md, "Training on a GPU".
#
# Usage, from a checkout with .device/ on the GPU machine: the trainer's own arguments, with the
# datasets unpacked under .gpu-work/data (git-ignored: fer2013, ferplus, ckplus/CK+48) and the
# model under $OUT/model ($OUT defaults to .gpu-work/out), so that it and its checkpoints end up
# together in $OUT:
#   bash scripts/gpu-train.sh train --data .gpu-work/data/fer2013 --out $OUT/model --epochs 60 ...
# Checkpoint files of an earlier run copied into .device/resume/ (state.json, last-*, best-*,
# optimizer-*) are put back into $OUT/model/checkpoints first, so `--resume` continues that run.
# The whole log is $OUT/train.log.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-.gpu-work/out}"
mkdir -p "$out/model/checkpoints"
. scripts/gpu-setup.sh

if [ -d "$bundle/resume" ]; then
  cp "$bundle"/resume/* "$out/model/checkpoints/" 2>/dev/null || true
fi

"$trainer" "$@" 2>&1 | tee "$out/train.log"
