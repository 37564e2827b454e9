#!/usr/bin/env bash
# Runs a mien-trainer command on a lent GPU machine (the `device` tool of this workplace), from
# what `cargo xtask gpu-bundle` put in .device/: the trainer binary built here, the datasets and
# the Vulkan loader, set up by gpu-setup.sh; the trainer's `--device auto` then finds the GPU
# through wgpu's Vulkan backend.
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
out="${OUT:-.gpu-work/out}"
mkdir -p "$out/model/checkpoints"
. scripts/gpu-setup.sh

if [ -d "$bundle/resume" ]; then
  cp "$bundle"/resume/* "$out/model/checkpoints/" 2>/dev/null || true
fi

"$trainer" "$@" 2>&1 | tee "$out/train.log"
