#!/usr/bin/env bash
# Fits one training run of the shipped recipe into a fixed amount of wall time (BUDGET_S seconds,
# default 540) on a GPU machine whose speed is not known in advance, from the bundle that
# `cargo xtask gpu-bundle` packed into .device/ (see docs/TRAINING.md, "Training on a GPU"). The
# cosine schedule is laid out over the run's epoch count, so that count must be chosen before
# the run starts: a 2-epoch probe measures seconds per epoch, the run gets as many epochs as the
# time left allows, and the weight averages of its last 10, 20 and 30 % of epochs are written
# too (the model selection rule of docs/TRAINING.md). Everything that matters ends up as files
# in $OUT (default .gpu-work/out): the logs and one tarball of the models (the run's best epoch
# and the averages) plus the last checkpoint, so that a later run can `--resume` it.
#
# Usage, from a checkout with .device/ on the GPU machine: BUDGET_S=3600 bash scripts/gpu-fit.sh [train args]
set -uo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
deadline=$((start + ${BUDGET_S:-540}))
out="${OUT:-.gpu-work/out}"
mkdir -p "$out"

. scripts/gpu-setup.sh
data="$data/fer2013" # gpu-setup.sh unpacked the datasets under $data
# The shipped recipe; an extra argument replaces its default (the trainer refuses an option given
# twice), so `--width 3 --teacher assets/model` trains a wider network, or distils into this one.
recipe=(--no-class-weights --patience 0)
defaults=(--width 1.25 --augment 0.9 --dropout 0.3)
for ((i = 0; i < ${#defaults[@]}; i += 2)); do
  case " $* " in
    *" ${defaults[i]} "* | *" ${defaults[i]}="*) ;;
    *) recipe+=("${defaults[i]}" "${defaults[i + 1]}") ;;
  esac
done
recipe+=("$@")

# The probe: epoch 2 times a steady epoch (epoch 1 also compiles the GPU's kernels).
timeout 240 "$trainer" train --device gpu --data "$data" --out .gpu-work/probe --epochs 2 "${recipe[@]}" 2>&1 \
  | tr '\r' '\n' | grep -v -e '\[' -e '^ *$' >"$out/probe.log"
cat "$out/probe.log"
epoch_s=$(sed -n 's/^epoch *2\/2:.* \([0-9][0-9]*\) s *$/\1/p' "$out/probe.log")
probe_end=$(date +%s)
if [ -z "$epoch_s" ]; then
  echo "gpu-fit: the probe did not finish two epochs"
  ldconfig -p | grep -i -e vulkan -e nvidia -e GLdispatch | head -n 20
  ls /usr/local/nvidia/share/vulkan/icd.d /usr/share/vulkan/icd.d 2>&1
  exit 1
fi
# The run's start-up (dataset load, duplicate check, kernels) is what the probe took beyond its
# two epochs; 90 s is kept for averaging and packing.
overhead=$((probe_end - start - 2 * epoch_s))
[ "$overhead" -lt 20 ] && overhead=20
left=$((deadline - probe_end - overhead - 90))
epochs=$((left / (epoch_s + 1)))
[ "$epochs" -gt 120 ] && epochs=120
echo "gpu-fit: ${epoch_s} s an epoch, ${left} s left for training: ${epochs} epochs"
if [ "$epochs" -lt 5 ]; then echo "gpu-fit: too slow for a run in one call"; exit 1; fi

run=.gpu-work/run
timeout $((deadline - $(date +%s) - 75)) "$trainer" train --device gpu --data "$data" --out "$run" --epochs "$epochs" \
  --keep-epochs "${recipe[@]}" 2>&1 | tr '\r' '\n' | grep -v -e '\[' -e '^ *$' >"$out/train.log"
tail -n "$((epochs + 3))" "$out/train.log"

mkdir -p .gpu-work/models
done_epochs=$(ls "$run"/checkpoints/last-*.safetensors 2>/dev/null | wc -l)
previous=0
for pct in 10 20 30; do
  n=$(((done_epochs * pct + 99) / 100))
  # A short run rounds two shares to the same window: average each window once.
  [ "$n" -lt 2 ] || [ "$n" -eq "$previous" ] && continue
  previous=$n
  first=$((done_epochs - n + 1))
  [ $(($(date +%s) + 15)) -gt "$deadline" ] && break
  "$trainer" average --data "$data" --checkpoints "$run/checkpoints" --epochs "$first-$done_epochs" \
    --out ".gpu-work/models/avg-$first-$done_epochs" >>"$out/average.log" 2>&1
  grep -i "val" "$out/average.log" | tail -n 2
done
cp -r "$run" .gpu-work/models/run
# Only the checkpoints a resume needs go into the tarball (every kept epoch is 1.3 MB).
"$trainer" prune --checkpoints .gpu-work/models/run/checkpoints
tar -czf "$out/models.tar.gz" -C .gpu-work models
ls -la "$out"
