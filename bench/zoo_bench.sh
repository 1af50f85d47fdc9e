#!/usr/bin/env bash
# Zoo generation speed, peak memory and quality: nmflow against two PyTorch CPU references, side by
# side in one run, with the same data, architecture, batch size, optimizer and epochs.
#
#   bench/zoo_bench.sh [RUNS] [EPOCHS] [SEQUENTIAL_RUNS] [PAIRS] [ENGINES]
#
# Speed is model-epochs per second of the whole job (data loading, training, final evaluation on the
# train and test splits); peak memory is the process's maximum resident set (GNU time). nmflow (each
# engine in ENGINES, default "fused burn") and the batched reference alternate PAIRS times (default
# 1; this machine's speed drifts from minute to minute, so each round's ratio is printed and then
# the median). The sequential reference trains SEQUENTIAL_RUNS runs one at a time, once (its rate
# does not depend on the number of runs); nmflow and the batched reference train RUNS runs.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-256}
epochs=${2:-1}
seq_runs=${3:-8}
pairs=${4:-1}
engines=${5:-fused burn}
arch=mlp:784-10-10
export CUDA_VISIBLE_DEVICES=""
bench/setup.sh
command -v /usr/bin/time >/dev/null || { echo "bench/zoo_bench.sh needs GNU time (apt-get install time)" >&2; exit 1; }
cargo build --release -q -p nmflow-host
./target/release/nmflow data fetch --only mnist >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Runs a job, its JSON on stdout into $1.json and its peak RSS (KiB) into $1.rss.
measure() {
  local name=$1
  shift
  /usr/bin/time -f "%M" -o "$out/$name.rss" "$@" > "$out/$name.json"
}
for i in $(seq 1 "$pairs"); do
  for e in $engines; do
    rm -rf "$out/zoo"
    measure "nmflow-$e-$i" ./target/release/nmflow zoo --dataset mnist --arch "$arch" --runs "$runs" \
      --epochs "$epochs" --batch-size 64 --optimizer adam --lr 1e-3 --engine "$e" --out "$out/zoo" \
      --json --quiet
  done
  measure "batched-$i" bench/.venv/bin/python bench/torch_zoo.py batched --arch "$arch" --runs "$runs" \
    --epochs "$epochs" --batch-size 64 --lr 1e-3
done
rm -rf "$out/zoo"
measure sequential bench/.venv/bin/python bench/torch_zoo.py sequential --arch "$arch" --runs "$seq_runs" \
  --epochs "$epochs" --batch-size 64 --lr 1e-3
bench/.venv/bin/python - "$out" "$pairs" "$engines" <<'PY'
import json, os, statistics, sys
out, pairs, engines = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
def load(name):
    d = json.load(open(os.path.join(out, f"{name}.json")))
    d["rss_mib"] = int(open(os.path.join(out, f"{name}.rss")).read().split()[-1]) / 1024
    return d
rows = []
for i in range(1, pairs + 1):
    for e in engines:
        rows.append((f"nmflow --engine {e}", i, load(f"nmflow-{e}-{i}")))
    rows.append(("pytorch batched (bmm)", i, load(f"batched-{i}")))
rows.append(("pytorch one at a time", 1, load("sequential")))
print(f"{'implementation':<24}{'round':>6}{'runs':>6}{'seconds':>10}{'model-epochs/s':>16}{'peak MiB':>10}{'test acc mean':>15}")
for name, i, d in rows:
    print(f"{name:<24}{i:>6}{d['runs']:>6}{d['seconds']:>10.1f}{d['model_epochs_per_second']:>16.2f}{d['rss_mib']:>10.0f}{100*d['test_acc_mean']:>14.2f}%")
seq = load("sequential")["model_epochs_per_second"]
for e in engines:
    ratios = [load(f"nmflow-{e}-{i}")["model_epochs_per_second"] / load(f"batched-{i}")["model_epochs_per_second"]
              for i in range(1, pairs + 1)]
    rate = statistics.median(load(f"nmflow-{e}-{i}")["model_epochs_per_second"] for i in range(1, pairs + 1))
    print(f"--engine {e}: ratio to pytorch batched per round {', '.join(f'{r:.2f}' for r in ratios)}; "
          f"median {statistics.median(ratios):.2f}x; median rate / one at a time {rate / seq:.2f}x")
    acc = load(f"nmflow-{e}-1")["test_acc_mean"] - load("batched-1")["test_acc_mean"]
    print(f"--engine {e}: test acc mean - pytorch batched: {100*acc:+.2f} pp")
PY
