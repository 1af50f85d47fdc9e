#!/usr/bin/env bash
# MNIST mlp:784-10-10 against rotations of its test set (BENCHMARKS.md "Harmful covariate shift").
# Needs the MNIST zoo and the functional recipe's seed-1 model (BENCHMARKS.md, "The functional
# recipe on MNIST"; runs/mnist-1024/).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${NMFLOW:-nmflow}
common="--zoo runs/mnist-1024/zoo --model runs/mnist-1024/set-cos-s1 --heldout-seeds 100 --guidance-scale 20 --guidance-lambda 0.3 --quiet"
$B shift-test $common --shift mnist:rotate=15 --out runs/shift/mnist-rot15
$B shift-test $common --shift mnist:rotate=30 --out runs/shift/mnist-rot30 --null-from runs/shift/mnist-rot15
$B shift-test $common --shift mnist:rotate=45 --out runs/shift/mnist-rot45 --null-from runs/shift/mnist-rot15
# Meta-detectron with members started near f's initialization (ρ = 0.02; γ, λ and ρ tuned on
# rotations by 15° and 30° with --seed 99): the same samples as above, ~1 min each.
near="--zoo runs/mnist-1024/zoo --model runs/mnist-1024/set-cos-s1 --heldout-seeds 100 --methods meta --guidance-scale 10 --guidance-lambda 0.1 --start-near-base 0.02 --quiet"
$B shift-test $near --shift mnist:rotate=15 --out runs/shift/mnist-rot15-near
$B shift-test $near --shift mnist:rotate=30 --out runs/shift/mnist-rot30-near --null-from runs/shift/mnist-rot15-near
$B shift-test $near --shift mnist:rotate=45 --out runs/shift/mnist-rot45-near --null-from runs/shift/mnist-rot15-near
