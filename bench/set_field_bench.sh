#!/usr/bin/env bash
# Training speed of `nmflow train`'s functional recipe (set field, NM-CFM, functional term on the
# 4-step Euler sampler) against the PyTorch reference of the same field, objective, batch and
# rollout (bench/torch_set_field.py), side by side in one run on an MNIST `mlp:784-10-10` zoo.
# The two alternate REPEATS times; each pair's ratio is printed, then the median.
#
#   bench/set_field_bench.sh [STEPS] [REPEATS] [THREADS]
#       (THREADS: RAYON_NUM_THREADS for nmflow and torch's intra-op threads; default: all cores)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-200}
repeats=${2:-3}
threads=${3:-$(nproc)}
export CUDA_VISIBLE_DEVICES=""
bench/setup.sh
command -v /usr/bin/time >/dev/null || { echo "$0 needs GNU time (apt-get install time)" >&2; exit 1; }
cargo build --release -q -p nmflow-host
./target/release/nmflow data fetch --only mnist >/dev/null
zoo=runs/bench/mnist-64
./target/release/nmflow zoo --dataset mnist --arch mlp:784-10-10 --runs 64 --epochs 1 \
  --out "$zoo" --quiet >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for i in $(seq 1 "$repeats"); do
  rm -rf "$out/model"
  # --eval-every past the end: time training steps only (one held-out evaluation at the last step).
  RAYON_NUM_THREADS=$threads /usr/bin/time -f %M -o "$out/nmflow-$i.rss" ./target/release/nmflow train --zoo "$zoo" --out "$out/model" \
    --field set --hidden 128 --depth 3 --time-dim 32 --batch-size 128 --lr-schedule constant \
    --functional-weight 2 --functional-rollout 4 --functional-samples 32 --functional-batch 256 \
    --steps "$steps" --eval-every "$steps" --json --quiet > "$out/nmflow-$i.json"
  OMP_NUM_THREADS=$threads /usr/bin/time -f %M -o "$out/torch-$i.rss" bench/.venv/bin/python bench/torch_set_field.py --zoo "$zoo" \
    --data-dir data --steps "$steps" > "$out/torch-$i.json"
done
bench/.venv/bin/python - "$out" "$repeats" <<'PY'
import json, sys, os, statistics
out, repeats = sys.argv[1], int(sys.argv[2])
ratios = []
for i in range(1, repeats + 1):
    n = json.load(open(os.path.join(out, f"nmflow-{i}.json")))
    t = json.load(open(os.path.join(out, f"torch-{i}.json")))
    r = n["steps_per_second"] / t["steps_per_second"]
    rss = lambda k: int(open(os.path.join(out, f"{k}-{i}.rss")).read().split()[-1]) / 1024
    ratios.append(r)
    print(f"pair {i}: nmflow {n['steps_per_second']:.2f} steps/s ({n['engine']} engine), "
          f"pytorch {t['steps_per_second']:.2f} steps/s ({t['threads']} threads): {r:.2f}x; "
          f"peak memory nmflow {rss('nmflow'):.0f} MiB, pytorch {rss('torch'):.0f} MiB")
print(f"field parameters: {n['field_params']} (nmflow), {t['field_params']} (pytorch)")
print(f"median ratio nmflow / pytorch: {statistics.median(ratios):.2f}x "
      f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x)")
PY
