#!/usr/bin/env bash
# Persistent PTX and autotune caches: cold against warm runs.
set -u
. bench/cuda-probe/lib.sh
C='[compilation]
cache = { file = "/tmp/cc" }
[compilation.logger]
level = "basic"
stderr = true
[autotune]
cache = { file = "/tmp/cc" }'
L='[compilation.logger]
level = "basic"
stderr = true'
Z="zoo --dataset mnist8 --arch mlp:64-16-10 --runs 64 --epochs 1 --shard-runs 64 --device cuda --json --quiet"
job zoo8-cold 150 "$C" $n $Z --out /tmp/w-zoo8-cold/z
ls -la /tmp/cc > $o/cc.ls 2>&1; du -sh /tmp/cc >> $o/cc.ls 2>&1
job zoo8-warm 60 "$C" $n $Z --out /tmp/w-zoo8-warm/z
job zoo8-min 60 "$L" CUBECL_AUTOTUNE_LEVEL=minimal $n $Z --out /tmp/w-zoo8-min/z
S="train --zoo $R/runs/bench/mnist-64 --field set --functional-weight 2 --eval-every 1000 --device cuda --json --quiet"
job set-cold 80 "$C" $n $S --steps 5 --out /tmp/w-set-cold/m
job set-warm 45 "$C" $n $S --steps 30 --out /tmp/w-set-warm/m
tar czf $OUT/diag2.tgz -C /tmp d
cat $o/summary.txt
