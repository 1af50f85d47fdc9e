#!/usr/bin/env bash
# GPU speed: `nmflow … --device cuda` against PyTorch on the same GPU, side by side in one run.
#
#   bench/gpu_bench.sh [NMFLOW] [OUT]
#       NMFLOW: an nmflow built with `--features cuda` (default target/release/nmflow);
#       OUT: where logs and JSON lines go (default: a temporary folder).
#       Environment: NMFLOW_DATA (MNIST's four .gz files under mnist/), PYTHON (a python3 with
#       torch, numpy and safetensors; default python3), PAIRS (alternations per job, default 2),
#       ZOO_EPOCHS (default 5), ZOO_RUNS and ZOO8_RUNS (default 256 and 4096), SET_STEPS and
#       FIELD_STEPS (default 300 and 500), DEVICE (default cuda; `cpu` checks the script itself
#       on a machine without a GPU, with small sizes), JOB_TIMEOUT (seconds per job, default 300:
#       a job past it is reported as timed out and the benchmark goes on). burn's CUDA backend
#       reads CUBECL_DEBUG_LOG=stderr (log kernel compilation and autotuning) and
#       CUBECL_AUTOTUNE_LEVEL=minimal|balanced|extensive|full from the environment.
#
# Jobs (each nmflow job and its PyTorch reference alternate PAIRS times):
#   1. `train`, set field + functional term (the functional recipe, constant lr), on a 64-run MNIST zoo
#      (itself trained on the GPU);
#   2. `sample` and `eval` on the GPU, and `eval` of the same model on the CPU (same accuracy);
#   3. zoo, MNIST mlp:784-10-10, ZOO_RUNS runs × ZOO_EPOCHS epochs, batch 64, Adam 1e-3, one shard;
#   4. `train`, NM-CFM with the MLP field (hidden 512, depth 3), same 64-run zoo;
#   5. zoo, mnist8 mlp:64-16-10, ZOO8_RUNS runs × ZOO_EPOCHS epochs, same settings.
# Every finished job lands in OUT/runs.tsv at once, so an interrupted run can still be summarized
# with bench/gpu_bench_summary.py.
# The zoo rate is model-epochs per second of the whole job (data loading, training, final
# evaluation). For `train`, nmflow's rate is marginal: steps/s between a short and a long run after
# a warm-up run, so that kernel compilation and autotuning (paid once per process on the GPU) stay
# out, as PyTorch's untimed warm-up steps keep its start-up out; the whole-loop rate is printed too.
# Peak host memory is each process's maximum resident set; peak GPU memory is nvidia-smi's
# memory.used sampled every 100 ms (the whole card, which runs nothing else).
set -uo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/release/nmflow}")
out=${2:-$(mktemp -d)}
mkdir -p "$out"
py=${PYTHON:-python3}
pairs=${PAIRS:-2}
zoo_epochs=${ZOO_EPOCHS:-5}
set_steps=${SET_STEPS:-300}
field_steps=${FIELD_STEPS:-500}
zoo_runs=${ZOO_RUNS:-256}
zoo8_runs=${ZOO8_RUNS:-4096}
device=${DEVICE:-cuda}
job_timeout=${JOB_TIMEOUT:-300}
export NMFLOW_DATA=$(realpath "${NMFLOW_DATA:-data}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ "$device" = cuda ]; then
  command -v nvidia-smi >/dev/null || { echo "$0: no nvidia-smi: this benchmark needs an NVIDIA GPU" >&2; exit 1; }
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$out/gpu.txt"
else
  nvidia-smi() { :; }
fi
# The driver's library (libcuda) where the loader may not look for it.
[ -d /usr/local/nvidia/lib64 ] && export LD_LIBRARY_PATH="/usr/local/nvidia/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# burn's CUDA backend compiles its kernels at run time with NVRTC, which it loads as libnvrtc.so:
# point it at the toolkit's or the PyTorch wheel's copy when the loader does not know one.
if ! ldconfig -p | grep -q 'libnvrtc\.so'; then
  nvrtc=$(find /usr/local/cuda*/lib64 /usr/local/cuda*/targets /opt /usr/lib -name 'libnvrtc.so*' \
    ! -name '*builtins*' 2>/dev/null | sort | tail -1)
  if [ -n "$nvrtc" ]; then
    mkdir -p "$work/lib"
    ln -sf "$nvrtc" "$work/lib/libnvrtc.so"
    export LD_LIBRARY_PATH="$work/lib:$(dirname "$nvrtc")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "NVRTC: $nvrtc"
  fi
fi
"$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0))' \
  | tee "$out/torch.txt"

# measure NAME CMD…: runs CMD with its stdout in $out/NAME.json and stderr in $out/NAME.err, and
# appends NAME, wall seconds, peak host RSS (MiB), peak GPU memory (MiB) and the exit code to
# $out/runs.tsv. A failed or timed-out job (exit 124) is reported and the benchmark goes on.
measure() {
  local name=$1
  shift
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$work/$name.gpu" 2>/dev/null &
  local smi=$!
  local t0 rc
  t0=$(date +%s.%N)
  "$py" - "$work/$name.rss" timeout "$job_timeout" "$@" > "$out/$name.json" 2> "$out/$name.err" <<'PY'
import resource, subprocess, sys
rc = subprocess.run(sys.argv[2:]).returncode
open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(rc)
PY
  rc=$?
  local wall
  wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
  kill "$smi" 2>/dev/null
  wait "$smi" 2>/dev/null
  local gpu
  gpu=$(sort -n "$work/$name.gpu" 2>/dev/null | tail -1)
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$wall" "$(( $(cat "$work/$name.rss" 2>/dev/null || echo 0) / 1024 ))" \
    "${gpu:-0}" "$rc" >> "$out/runs.tsv"
  if [ "$rc" != 0 ]; then
    echo "FAILED ($rc): $name: $*" >&2
    tail -5 "$out/$name.err" >&2
  fi
  return 0
}
: > "$out/runs.tsv"

zoo_job() { # LABEL DATASET ARCH RUNS PAIR
  local label=$1 dataset=$2 arch=$3 runs=$4 i=$5
  rm -rf "$work/zoo"
  measure "zoo-$label-nmflow-$i" "$bin" zoo --dataset "$dataset" --arch "$arch" --runs "$runs" \
    --epochs "$zoo_epochs" --batch-size 64 --optimizer adam --lr 1e-3 --shard-runs "$runs" \
    --device "$device" --out "$work/zoo" --json --quiet
  measure "zoo-$label-torch-$i" "$py" bench/torch_zoo.py batched --dataset "$dataset" --arch "$arch" \
    --runs "$runs" --epochs "$zoo_epochs" --batch-size 64 --lr 1e-3 --device "$device" \
    --data-dir "$NMFLOW_DATA"
}

set_args=(--field set --hidden 128 --depth 3 --time-dim 32 --batch-size 128 --lr-schedule constant
  --functional-weight 2 --functional-rollout 4 --functional-samples 32 --functional-batch 256)
mlp_args=(--method cfm --field mlp --hidden 512 --depth 3 --time-dim 32 --batch-size 128)
train_job() { # LABEL STEPS PAIR TORCH-SCRIPT ARGS…
  local label=$1 steps=$2 i=$3 script=$4
  shift 4
  local runs="short:$(( steps / 5 )) long:$steps"
  # A warm-up run first, in case compiled kernels or autotuning results outlive the process.
  [ "$i" = 1 ] && runs="warm:20 $runs"
  for n in $runs; do
    # --eval-every past the end: training steps only (one held-out evaluation at the last step).
    measure "train-$label-nmflow-${n%%:*}-$i" "$bin" train --zoo "$zoo" \
      --out "$work/model-$label-${n%%:*}-$i" "$@" --steps "${n##*:}" --eval-every "${n##*:}" \
      --device "$device" --json --quiet
  done
  local data=()
  [ "$script" = torch_set_field.py ] && data=(--data-dir "$NMFLOW_DATA")
  measure "train-$label-torch-$i" "$py" "bench/$script" --zoo "$zoo" "${data[@]}" --steps "$steps" \
    --device "$device"
}

# The meta-models' zoo: 64 MNIST runs, one epoch (on the CPU if the GPU zoo failed).
zoo=$work/mnist-64
measure meta-zoo "$bin" zoo --dataset mnist --arch mlp:784-10-10 --runs 64 --epochs 1 \
  --device "$device" --out "$zoo" --json --quiet
[ -f "$zoo/manifest.json" ] || "$bin" zoo --dataset mnist --arch mlp:784-10-10 --runs 64 --epochs 1 \
  --out "$zoo" --force --quiet > /dev/null

# Most wanted first: the functional recipe's training, then the zoos, then the rest.
for i in $(seq 1 "$pairs"); do train_job set "$set_steps" "$i" torch_set_field.py "${set_args[@]}"; done
# The other commands on the GPU: sample and eval of a set-field model, and the same eval on the CPU
# (the accuracies must agree: same model, same seed, same draws).
model=$work/model-set-long-1
measure sample-cuda "$bin" sample --model "$model" --n 64 --steps 4 --out "$work/gen.safetensors" \
  --device "$device" --json
measure eval-cuda "$bin" eval --model "$model" --n 64 --steps 4,8 --downstream 0 --device "$device" \
  --json --quiet
measure eval-cpu "$bin" eval --model "$model" --n 64 --steps 4,8 --downstream 0 --json --quiet
for i in $(seq 1 "$pairs"); do zoo_job mnist mnist mlp:784-10-10 "$zoo_runs" "$i"; done
for i in $(seq 1 "$pairs"); do train_job mlp "$field_steps" "$i" torch_field.py "${mlp_args[@]}"; done
for i in $(seq 1 "$pairs"); do zoo_job mnist8 mnist8 mlp:64-16-10 "$zoo8_runs" "$i"; done

"$py" bench/gpu_bench_summary.py "$out" "$pairs" | tee "$out/summary.txt"
