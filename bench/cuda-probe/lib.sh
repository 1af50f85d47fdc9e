# Shared by the probes: unpack nmflow, then `job NAME LIMIT CUBECL_TOML [VAR=VALUE…] CMD…` runs CMD in a
# fresh working directory with that cubecl.toml, under a time limit, with timestamped stderr,
# GPU utilization (nvidia-smi) and CPU time per thread every 2 s; source it from the repository root.
set -u
R=$PWD  # the repository root, with .gpu/ (see README.md)
mkdir -p /tmp/b && gunzip -c .gpu/nmflow.gz > /tmp/b/nmflow && chmod +x /tmp/b/nmflow
export NMFLOW_DATA=$R/.gpu/data LD_LIBRARY_PATH=/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}
n=/tmp/b/nmflow
o=/tmp/d; mkdir -p $o
{ for t in gdb perf eu-stack pstack py-spy nvidia-smi nsys; do echo "$t: $(command -v $t)"; done; nproc; } > $o/tools.txt 2>&1
TS='import sys,time
t0=time.time()
for l in sys.stdin: sys.stdout.write("%.3f %s" % (time.time()-t0, l)); sys.stdout.flush()'
mon() { # pid name: per-thread cpu every 2 s, gdb stacks at 12 s and 30 s
  local pid=$1 name=$2 k=0
  while kill -0 $pid 2>/dev/null; do
    { echo "== t=$((k*2))"; for d in /proc/$pid/task/*; do echo "$(cat $d/comm 2>/dev/null) $(awk '{print $14, $15}' $d/stat 2>/dev/null)"; done | sort | uniq -c | sort -rn | head -12; } >> $o/$name.threads
    if command -v gdb >/dev/null && { [ $k = 6 ] || [ $k = 15 ]; }; then timeout 20 gdb -p $pid -batch -ex "thread apply all bt 30" > $o/$name.gdb$k 2>&1; fi
    sleep 2; k=$((k+1))
  done
}
job() { # name limit cubecl.toml-content env... -- cmd
  local name=$1 lim=$2 toml=$3; shift 3
  local d=/tmp/w-$name; mkdir -p $d; touch $d/Cargo.toml; printf '%s\n' "$toml" > $d/cubecl.toml
  ( cd $d; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader -lms 500 > $o/$name.smi 2>&1 & sp=$!
    a=$(date +%s.%N)
    env "$@" > $o/$name.out 2> >(python3 -u -c "$TS" > $o/$name.err) & p=$!
    sleep 0.5; cp=$p; mon $cp $name & mp=$!
    ( sleep $lim; kill $p $cp 2>/dev/null ) & kp=$!
    wait $p; rc=$?; b=$(date +%s.%N); kill $kp $sp 2>/dev/null; wait $mp 2>/dev/null
    echo "$name rc=$rc wall=$(awk -v a=$a -v b=$b 'BEGIN{printf "%.1f", b-a}') compiles=$(grep -c 'Compiling kernel' $o/$name.err) $(tail -c 300 $o/$name.out | tr '\n' ' ')" | tee -a $o/summary.txt )
}
