#!/usr/bin/env bash
# A real test of the job-array path: starts a single-node Slurm cluster on this machine
# (local-cluster.sh), submits a 4-task array of a small zoo plus the dependent merge
# (submit.sh), waits, checks the merged zoo byte for byte against the same zoo trained by one local
# job, and stops the daemons it started. Run as root (CI does). Exit status 0 only if the bytes
# are equal.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/scripts/slurm
cd "$root"
cargo build --release -q -p nmflow-host
bin=$root/target/release/nmflow
data=${NMFLOW_DATA:-$root/data}
"$bin" data fetch --only mnist --data-dir "$data" >/dev/null

scratch=$(mktemp -d /tmp/nmflow-slurm.XXXXXX)
trap '"$here/local-cluster.sh" stop "$scratch"; sleep 1; rm -rf "$scratch"' EXIT
"$here/local-cluster.sh" start "$scratch"
export SLURM_CONF=$scratch/slurm.conf

settings=(--dataset mnist8 --arch mlp:64-8-10 --runs 8 --epochs 1 --shard-runs 2)
cd "$scratch"
started=$(date +%s)
NMFLOW=$bin NMFLOW_DATA=$data SBATCH_EXTRA="--cpus-per-task=1" \
  "$here/submit.sh" 4 "$scratch/array" "${settings[@]}"
for _ in $(seq 1 600); do
  [ -z "$(squeue -h 2>/dev/null)" ] && break
  sleep 0.5
done
[ -z "$(squeue -h)" ] || { echo "jobs still queued after 300 s"; squeue; exit 1; }
echo "array and merge done in $(( $(date +%s) - started )) s; task outputs:"
cat "$scratch"/nmflow-zoo-*.out
[ -f "$scratch/array/manifest.json" ] || { echo "the merge wrote no manifest"; exit 1; }

"$bin" zoo --out "$scratch/single" "${settings[@]}" --data-dir "$data" --quiet >/dev/null
for f in manifest.json settings.json shard-00000.safetensors shard-00001.safetensors \
  shard-00002.safetensors shard-00003.safetensors; do
  cmp "$scratch/single/$f" "$scratch/array/$f"
done
echo "slurm job array: merged zoo equals the single-job zoo byte for byte (8 runs, 4 tasks)"
