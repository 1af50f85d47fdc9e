#!/usr/bin/env bash
# Meta-model training speed: `nmflow train` (NM-CFM, MLP field) against the PyTorch reference with
# the same field, batch, optimizer and zoo, side by side in one run. The two alternate REPEATS
# times (this machine's speed drifts by ±15 % from minute to minute, and alternating exposes both
# to the same drift); each pair's ratio is printed, then the median.
#
#   bench/field_bench.sh [STEPS] [HIDDEN] [REPEATS] [ENGINE]
#       (demo zoo, built if needed; ENGINE: auto (default), fused or burn)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-500}
hidden=${2:-512}
repeats=${3:-5}
engine=${4:-auto}
export CUDA_VISIBLE_DEVICES=""
bench/setup.sh
command -v /usr/bin/time >/dev/null || { echo "$0 needs GNU time (apt-get install time)" >&2; exit 1; }
cargo build --release -q -p nmflow-host
./target/release/nmflow demo --quiet >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for i in $(seq 1 "$repeats"); do
  rm -rf "$out/model"
  # --eval-every past the end: time training steps only (one held-out evaluation at the last step).
  /usr/bin/time -f %M -o "$out/nmflow-$i.rss" ./target/release/nmflow train --zoo runs/demo/zoo --out "$out/model" --method cfm --field mlp \
    --hidden "$hidden" --depth 3 --time-dim 32 --batch-size 128 --steps "$steps" --eval-every "$steps" \
    --engine "$engine" --json --quiet > "$out/nmflow-$i.json"
  /usr/bin/time -f %M -o "$out/torch-$i.rss" bench/.venv/bin/python bench/torch_field.py --zoo runs/demo/zoo --steps "$steps" --hidden "$hidden" \
    --depth 3 --time-dim 32 --batch-size 128 > "$out/torch-$i.json"
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
    print(f"pair {i}: nmflow {n['steps_per_second']:.1f} steps/s ({n['engine']} engine), "
          f"pytorch {t['steps_per_second']:.1f} steps/s ({t['threads']} threads): {r:.2f}x; "
          f"peak memory nmflow {rss('nmflow'):.0f} MiB, pytorch {rss('torch'):.0f} MiB")
print(f"field parameters: {n['field_params']} (nmflow), {t['field_params']} (pytorch); "
      "nmflow's loop includes minibatch drawing, as PyTorch's does")
print(f"median ratio nmflow / pytorch: {statistics.median(ratios):.2f}x "
      f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x)")
PY
