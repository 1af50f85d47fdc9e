#!/usr/bin/env bash
# Regenerates assets/: the int8 model files the firmware embeds and their test inputs.
#
#   model.nmf        mnist8 mlp:64-16-10, `nmflow train --recipe functional` (set field, width 128,
#                    3 blocks, functional term, cosine, 8,000 steps, Euler × 4) on a 16,384-run zoo
#   mnist-model.nmf  MNIST mlp:784-10-10, the 1,024-run cosine recipe of BENCHMARKS.md (seed 1)
#   mnist-latent.nmf MNIST mlp:784-10-10, a latent model: `nmflow vae --hidden 32 --latent 32
#                    --functional-target teacher --functional-weight 10 --eval-every 4000` (a
#                    32-wide MLP decoder distilled towards each run, the last VAE kept) on the same zoo, then
#                    Gaussian-source NM-CFM in its latent (MLP field 128 × 3), exported with Euler × 8
#   model-shift.nmf  model.nmf with a calibrated shift section (`nmflow shift-calibrate`, defaults:
#                    windows of 20, the guided ensemble's entropy, 100 + 50 null windows, seed 0)
#   perm-model.nmf   mnist8 mlp:64-16-10, class-conditioned: `nmflow train --condition classes
#                    --shots 5 --steps 6000` on a 4,096-run zoo of 256 label permutations (32 never
#                    trained on), int8
#   perm-support.*   task 224's support set (unseen in training): 5 training frames per class with
#                    the task's labels (`dump-inputs --shots 5 --task 224 --seed 1`)
#   perm-test.labels task 224's labels of the mnist8.* frames
#   mnist8.*, digits.*  1,000 MNIST-8×8 and 1,000 optdigits test frames (pixels 0..=16) and labels
#   mnist.*          200 MNIST test images (pixels 0..=255) and labels
#
# Zoos and models are kept under runs/ and reused when present. From nothing this takes hours on
# two cores (the 16,384-run zoo ~45 min, as a Slurm array: scripts/slurm/submit.sh; the MNIST zoo
# ~25 min; each training ~25 min with one thread; the permutation zoo ~15 min and its
# class-conditioned field ~80 min). The files are byte-identical when rebuilt on the
# machine that made them; other CPUs' GEMM kernels round differently, so the bytes (not the
# accuracy) may differ elsewhere. Run from anywhere; needs the host tool (built here).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here=$(cd "$(dirname "$0")" && pwd)
cd "$root"
cargo build --release -q -p nmflow-host
nmflow=./target/release/nmflow
# Training threads change the summation order of burn's kernels: the committed models used one.
export RAYON_NUM_THREADS=1

m8_zoo=runs/m8-16384/zoo
m8_model=runs/m8-16384/set-default
if [ ! -f "$m8_zoo/manifest.json" ]; then
  $nmflow zoo --dataset mnist8 --arch mlp:64-16-10 --runs 16384 --epochs 3 --out "$m8_zoo"
fi
if [ ! -f "$m8_model/train.json" ]; then
  $nmflow train --zoo "$m8_zoo" --out "$m8_model" --recipe functional
fi
$nmflow export --model "$m8_model" --out "$here/assets/model.nmf" --force

mn_zoo=runs/mnist-1024/zoo
mn_model=runs/mnist-1024/set-cos-s1
if [ ! -f "$mn_zoo/manifest.json" ]; then
  $nmflow zoo --dataset mnist --arch mlp:784-10-10 --runs 1024 --epochs 5 --out "$mn_zoo"
fi
if [ ! -f "$mn_model/train.json" ]; then
  $nmflow train --zoo "$mn_zoo" --out "$mn_model" --recipe functional --seed 1
fi
$nmflow export --model "$mn_model" --out "$here/assets/mnist-model.nmf" --force

mn_vae=runs/mnist-1024/latent/vae-h32-l32-b0.01-t10-last
mn_latent=runs/mnist-1024/latent/cfm-h32-l32-b0.01-t10-last
if [ ! -f "$mn_vae/vae-summary.json" ]; then
  $nmflow vae --zoo "$mn_zoo" --out "$mn_vae" --hidden 32 --latent 32 --beta 0.01 \
    --functional-target teacher --functional-weight 10 --eval-every 4000
fi
if [ ! -f "$mn_latent/train.json" ]; then
  $nmflow train --zoo "$mn_zoo" --out "$mn_latent" --latent "$mn_vae" --source gaussian \
    --source-std 1 --coupling independent --hidden 128
fi
$nmflow export --model "$mn_latent" --out "$here/assets/mnist-latent.nmf" --solver euler --steps 8 --force

pm_zoo=runs/cond/z-perm256
pm_model=runs/cond/c256-k5
if [ ! -f "$pm_zoo/manifest.json" ]; then
  $nmflow zoo --dataset mnist8 --arch mlp:64-16-10 --runs 4096 --epochs 3 \
    --tasks perm:256:unseen=32 --out "$pm_zoo"
fi
if [ ! -f "$pm_model/train.json" ]; then
  $nmflow train --zoo "$pm_zoo" --out "$pm_model" --condition classes --shots 5 --steps 6000
fi
$nmflow export --model "$pm_model" --out "$here/assets/perm-model.nmf" --force
$nmflow dump-inputs --dataset mnist8 --shots 5 --zoo "$pm_zoo" --task 224 --seed 1 \
  --out "$here/assets/perm-support"
perm_test=$(mktemp -d)
trap 'rm -rf "$perm_test"' EXIT
$nmflow dump-inputs --dataset mnist8 --n 1000 --zoo "$pm_zoo" --task 224 --out "$perm_test/t"
mv "$perm_test/t.labels" "$here/assets/perm-test.labels"

$nmflow shift-calibrate "$here/assets/model.nmf" --dataset mnist8 --out "$here/assets/model-shift.nmf" \
  --evaluate mnist8,digits --force
$nmflow dump-inputs --dataset mnist8 --n 1000 --out "$here/assets/mnist8"
$nmflow dump-inputs --dataset digits --n 1000 --out "$here/assets/digits"
$nmflow dump-inputs --dataset mnist --n 200 --out "$here/assets/mnist"
$nmflow edge-eval "$here/assets/model.nmf" --n 100
$nmflow edge-eval "$here/assets/mnist-model.nmf" --n 100 --dataset mnist
$nmflow edge-eval "$here/assets/mnist-latent.nmf" --n 100 --dataset mnist
$nmflow edge-eval "$here/assets/perm-model.nmf" --n 10 --support "$here/assets/perm-support" \
  --zoo "$pm_zoo" --task 224
