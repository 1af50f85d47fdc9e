#!/usr/bin/env bash
# Zoo generation speed and quality: nmflow against two PyTorch CPU references, side by side in one
# run, with the same data, architecture, batch size, optimizer and epochs.
#
#   bench/zoo_bench.sh [RUNS] [EPOCHS] [SEQUENTIAL_RUNS]
#
# Speed is model-epochs per second of the whole job (data loading, training, final evaluation on the
# train and test splits). The sequential reference trains SEQUENTIAL_RUNS runs one at a time (its
# rate does not depend on the number of runs); nmflow and the batched reference train RUNS runs.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-256}
epochs=${2:-1}
seq_runs=${3:-8}
arch=mlp:784-10-10
export CUDA_VISIBLE_DEVICES=""
bench/setup.sh
cargo build --release -q -p nmflow-host
./target/release/nmflow data fetch --only mnist >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
./target/release/nmflow zoo --dataset mnist --arch "$arch" --runs "$runs" --epochs "$epochs" \
  --batch-size 64 --optimizer adam --lr 1e-3 --out "$out/zoo" --json --quiet > "$out/nmflow.json"
bench/.venv/bin/python bench/torch_zoo.py batched --arch "$arch" --runs "$runs" --epochs "$epochs" \
  --batch-size 64 --lr 1e-3 > "$out/batched.json"
bench/.venv/bin/python bench/torch_zoo.py sequential --arch "$arch" --runs "$seq_runs" --epochs "$epochs" \
  --batch-size 64 --lr 1e-3 > "$out/sequential.json"
bench/.venv/bin/python - "$out" <<'PY'
import json, sys, os
out = sys.argv[1]
r = {k: json.load(open(os.path.join(out, f"{k}.json"))) for k in ["nmflow", "batched", "sequential"]}
print(f"{'implementation':<22}{'runs':>6}{'epochs':>7}{'seconds':>10}{'model-epochs/s':>16}{'test acc mean':>15}")
for k, name in [("nmflow", "nmflow (burn-flex)"), ("batched", "pytorch batched (bmm)"), ("sequential", "pytorch one at a time")]:
    d = r[k]
    print(f"{name:<22}{d['runs']:>6}{d.get('epochs', '-')!s:>7}{d['seconds']:>10.1f}{d['model_epochs_per_second']:>16.2f}{100*d['test_acc_mean']:>14.2f}%")
n = r["nmflow"]["model_epochs_per_second"]
print(f"ratio nmflow / pytorch batched:       {n / r['batched']['model_epochs_per_second']:.2f}x")
print(f"ratio nmflow / pytorch one at a time: {n / r['sequential']['model_epochs_per_second']:.2f}x")
print(f"test acc mean, nmflow - pytorch batched:    {100*(r['nmflow']['test_acc_mean'] - r['batched']['test_acc_mean']):+.2f} pp")
print(f"test acc mean, nmflow - pytorch sequential: {100*(r['nmflow']['test_acc_mean'] - r['sequential']['test_acc_mean']):+.2f} pp")
PY
