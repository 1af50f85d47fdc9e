#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, from Debian's packages (slurm-wlm, munge), with a
# minimal configuration in a scratch folder (nothing under /etc is changed). Run as root.
#
#   scripts/slurm/local-cluster.sh start DIR   # installs what is missing, starts the daemons
#   export SLURM_CONF=DIR/slurm.conf           # then sbatch, squeue, sinfo talk to it
#   scripts/slurm/local-cluster.sh stop DIR    # stops the daemons started into DIR
set -euo pipefail
cmd=${1:?usage: local-cluster.sh start|stop DIR}
dir=${2:?usage: local-cluster.sh start|stop DIR}
case "$cmd" in
start)
  need=()
  command -v slurmctld >/dev/null || need+=(slurm-wlm)
  command -v munged >/dev/null || need+=(munge)
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
  fi
  mkdir -p "$dir/spool" "$dir/state"
  # munge: the package made the key; start the daemon unless one answers already.
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    mkdir -p /run/munge
    munged --force 2>/dev/null
    pgrep -n munged > "$dir/munged.pid"
  fi
  munge -n | unmunge >/dev/null
  host=$(hostname -s)
  cat > "$dir/slurm.conf" <<CONF
ClusterName=nmflowlocal
SlurmctldHost=$host
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmUser=root
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmdSpoolDir=$dir/spool
StateSaveLocation=$dir/state
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
NodeName=$host CPUs=$(nproc) RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF=$dir/slurm.conf
  slurmctld -f "$SLURM_CONF"
  slurmd -f "$SLURM_CONF"
  state=""
  for _ in $(seq 1 60); do
    state=$(sinfo -h -o %t 2>/dev/null || true)
    [ "$state" = idle ] && exit 0
    sleep 0.5
  done
  echo "slurm node not idle after 30 s: '$state'" >&2
  cat "$dir"/slurm*.log >&2 || true
  exit 1
  ;;
stop)
  for name in slurmd slurmctld munged; do
    [ -f "$dir/$name.pid" ] && kill "$(cat "$dir/$name.pid")" 2>/dev/null || true
  done
  ;;
*)
  echo "usage: local-cluster.sh start|stop DIR" >&2
  exit 2
  ;;
esac
