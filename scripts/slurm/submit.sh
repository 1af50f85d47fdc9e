#!/usr/bin/env bash
# Submits a zoo as a Slurm job array of TASKS tasks plus the merge that runs when all succeeded,
# and prints both job ids:
#
#   scripts/slurm/submit.sh TASKS OUT [nmflow zoo flags…]
#
# Extra sbatch options (partition, time, memory) go in SBATCH_EXTRA, e.g.
# SBATCH_EXTRA="--partition=cpu --time=02:00:00".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tasks=${1:?usage: submit.sh TASKS OUT [nmflow zoo flags…]}
out=${2:?usage: submit.sh TASKS OUT [nmflow zoo flags…]}
shift 2
# shellcheck disable=SC2086
array=$(sbatch --parsable ${SBATCH_EXTRA:-} --array="0-$((tasks - 1))" "$here/zoo.sbatch" "$out" "$@")
array=${array%%;*}
# shellcheck disable=SC2086
merge=$(sbatch --parsable ${SBATCH_EXTRA:-} --dependency="afterok:$array" "$here/merge.sbatch" "$out")
merge=${merge%%;*}
echo "array $array ($tasks tasks), merge $merge → $out"
