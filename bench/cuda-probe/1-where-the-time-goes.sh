#!/usr/bin/env bash
# Where does nmflow's CUDA time go? Compile/autotune logs with timestamps, per-thread CPU, stack samples.
set -u
. bench/cuda-probe/lib.sh
LOG='[compilation.logger]
level = "basic"
stderr = true
[autotune.logger]
level = "minimal"
stderr = true'
PROF='[profiling.logger]
level = "minimal"
file = "/tmp/d/kernels.log"'
job zoo8 60 "$LOG" $n zoo --dataset mnist8 --arch mlp:64-16-10 --runs 64 --epochs 1 --shard-runs 64 --device cuda --out /tmp/w-zoo8/z --json
job zoo8-min 50 "" CUBECL_AUTOTUNE_LEVEL=minimal $n zoo --dataset mnist8 --arch mlp:64-16-10 --runs 64 --epochs 1 --shard-runs 64 --device cuda --out /tmp/w-zoo8-min/z --json --quiet
job set5 50 "$LOG" $n train --zoo $R/runs/bench/mnist-64 --out /tmp/w-set5/m --field set --functional-weight 2 --steps 5 --eval-every 5 --device cuda --json
job kern 20 "$PROF" $n zoo --dataset mnist8 --arch mlp:64-16-10 --runs 64 --epochs 1 --shard-runs 64 --device cuda --out /tmp/w-kern/z --json --quiet
[ -f /tmp/d/kernels.log ] && { wc -l /tmp/d/kernels.log; sort /tmp/d/kernels.log | uniq -c | sort -rn | head -60; } > $o/kernels.top && gzip /tmp/d/kernels.log
tar czf $OUT/diag.tgz -C /tmp d
cat $o/summary.txt
