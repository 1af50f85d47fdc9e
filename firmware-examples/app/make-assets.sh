#!/usr/bin/env bash
# Regenerates assets/: an int8 model file (mnist8, mlp:64-16-10, MLP field) and 300 test inputs
# each of MNIST-8×8 and optdigits. Run from anywhere; needs the host tool (built here).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here=$(cd "$(dirname "$0")" && pwd)
cd "$root"
cargo build --release -q -p nmflow-host
nmflow=./target/release/nmflow
$nmflow demo --quiet >/dev/null                       # zoo: runs/demo/zoo (256 runs, mnist8)
# --engine burn: the engine that made the committed file, so a rerun reproduces it byte for byte.
$nmflow train --zoo runs/demo/zoo --out runs/demo/fw-field --field mlp --hidden 128 --depth 2 \
  --time-dim 16 --steps 3000 --seed 0 --solver rk4 --solver-steps 2 --engine burn --quiet
$nmflow export --model runs/demo/fw-field --quant int8 --out "$here/assets/model.nmf"
$nmflow dump-inputs --dataset mnist8 --n 300 --out "$here/assets/mnist8"
$nmflow dump-inputs --dataset digits --n 300 --out "$here/assets/digits"
$nmflow edge-eval "$here/assets/model.nmf" --n 100
