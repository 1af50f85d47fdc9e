#!/usr/bin/env bash
# Meta-model training speed: `nmflow train` (NM-CFM, MLP field) against the PyTorch reference with
# the same field, batch, optimizer and zoo, side by side in one run.
#
#   bench/field_bench.sh [STEPS] [HIDDEN]      (uses the demo zoo, building it if needed)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-500}
hidden=${2:-512}
export CUDA_VISIBLE_DEVICES=""
bench/setup.sh
cargo build --release -q -p nmflow-host
./target/release/nmflow demo --quiet >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# --eval-every past the end: time training steps only (one held-out evaluation at the last step).
./target/release/nmflow train --zoo runs/demo/zoo --out "$out/model" --method cfm --field mlp \
  --hidden "$hidden" --depth 3 --time-dim 32 --batch-size 128 --steps "$steps" --eval-every "$steps" \
  --json --quiet > "$out/nmflow.json"
bench/.venv/bin/python bench/torch_field.py --zoo runs/demo/zoo --steps "$steps" --hidden "$hidden" \
  --depth 3 --time-dim 32 --batch-size 128 > "$out/torch.json"
bench/.venv/bin/python - "$out" <<'PY'
import json, sys, os
n = json.load(open(os.path.join(sys.argv[1], "nmflow.json")))
t = json.load(open(os.path.join(sys.argv[1], "torch.json")))
print(f"nmflow:  {n['steps_per_second']:.1f} steps/s ({n['field_params']} field parameters, training loop incl. minibatch drawing)")
print(f"pytorch: {t['steps_per_second']:.1f} steps/s ({t['field_params']} field parameters, steps only)")
print(f"ratio nmflow / pytorch: {n['steps_per_second'] / t['steps_per_second']:.2f}x")
PY
