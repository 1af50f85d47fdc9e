#!/usr/bin/env bash
# nmflow's own kernel cache (no cubecl.toml): a cold run, then the same job warm.
set -u
mkdir -p /tmp/b && gunzip -c .gpu/nmflow.gz > /tmp/b/nmflow && chmod +x /tmp/b/nmflow
export NMFLOW_DATA=$PWD/.gpu/data LD_LIBRARY_PATH=/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}
export HOME=/tmp/home; mkdir -p $HOME; unset XDG_CACHE_HOME NMFLOW_CUDA_CACHE
o=/tmp/d3; mkdir -p $o; cd /tmp
t() { local name=$1 lim=$2; shift 2; local a=$(date +%s.%N); timeout $lim "$@" > $o/$name.json 2> $o/$name.err; local rc=$?; local b=$(date +%s.%N); echo "$name rc=$rc wall=$(awk -v a=$a -v b=$b 'BEGIN{printf "%.1f", b-a}') $(tail -c 330 $o/$name.json | tr '\n' ' ')" | tee -a $o/summary.txt; }
Z="zoo --dataset mnist8 --arch mlp:64-16-10 --runs 64 --epochs 1 --shard-runs 64 --device cuda --json --quiet"
t cold 140 /tmp/b/nmflow $Z --out /tmp/z-cold
du -sh $HOME/.cache/nmflow/cuda > $o/cache.txt 2>&1; find $HOME/.cache/nmflow/cuda -maxdepth 3 >> $o/cache.txt 2>&1
t warm 25 /tmp/b/nmflow $Z --out /tmp/z-warm
cmp /tmp/z-cold/shard-00000.safetensors /tmp/z-warm/shard-00000.safetensors > $o/cmp.txt 2>&1; echo "cmp rc=$?" >> $o/cmp.txt
ls /tmp/z-warm >> $o/cmp.txt
tar czf $OUT/d3.tgz -C /tmp d3
cat $o/summary.txt $o/cache.txt $o/cmp.txt | head -30
