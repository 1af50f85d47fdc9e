#!/usr/bin/env bash
# Regenerates assets/: an int8 model file (mnist8, mlp:64-16-10, MLP field) and 300 test inputs
# each of MNIST-8×8 and optdigits. Run from anywhere; needs the host tool (built here).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here=$(cd "$(dirname "$0")" && pwd)
cd "$root"
cargo build --release -q -p nmflow-host
nmflow=./target/release/nmflow
# The demo trains the zoo (runs/demo/zoo, 256 runs on mnist8) and the device's field
# (runs/demo/device-field: MLP field, width 128, two hidden layers, time embedding 16, 3,000 steps
# on burn's engine, RK4 × 2) and exports it int8: the file committed here, byte for byte on the
# machine that made it (other CPUs' GEMM kernels round differently).
$nmflow demo --quiet >/dev/null
cp runs/demo/device-field/model-int8.nmf "$here/assets/model.nmf"
$nmflow dump-inputs --dataset mnist8 --n 300 --out "$here/assets/mnist8"
$nmflow dump-inputs --dataset digits --n 300 --out "$here/assets/digits"
$nmflow edge-eval "$here/assets/model.nmf" --n 100
