#!/usr/bin/env bash
# Builds the QEMU Cortex-M4F examples (mnist8 frames; MNIST images; shift decisions on 50 + 50
# windows; adaptation to an unseen label permutation from 50 labeled frames), runs each under
# qemu-system-arm (mps2-an386) with a time limit, decodes its defmt output, and checks that its
# results equal the host's for the same seeds
# (bit for bit: the runtime's maths is the same Rust code and f32 IEEE arithmetic on both).
# Prints flash/RAM use (from the ELF sections), the stack high-water mark and the instruction
# count per synthesis. Installs what it needs (thumbv7em target, qemu-system-arm, defmt-print).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/qemu-mps2-an386"
rustup target add thumbv7em-none-eabihf >/dev/null
if ! command -v qemu-system-arm >/dev/null; then
  apt-get update -q && apt-get install -y -q --no-install-recommends qemu-system-arm
fi
if ! command -v defmt-print >/dev/null; then
  cargo install defmt-print --version 1.2.0 --locked
fi
# Ask cargo where it put the ELFs (CARGO_TARGET_DIR or a shared target directory may move them).
build=$(cargo build --release -q --message-format=json)
elf_of() {
  printf '%s\n' "$build" | grep "\"name\":\"$1\"" \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1
}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
if ! (cd ../app && cargo test --release -q --test host -- --nocapture --test-threads 1) > "$out/host-run.log" 2>&1; then
  cat "$out/host-run.log" >&2
  echo "FAIL: the host run of the application failed" >&2
  exit 1
fi
sections() {
  local elf=$1 want=$2 total=0 size
  for size in $(readelf -SW "$elf" | sed 's/^ *\[ *[0-9]*\] *//' | awk -v want="$want" '$1 ~ want {print $5}'); do
    total=$((total + 16#$size))
  done
  echo "$total"
}
# run_firmware BIN PATTERN [LIMIT]: runs BIN under QEMU (LIMIT seconds, 120 by default), prints
# its log, and requires the result lines matching PATTERN to equal the host run's bit for bit.
run_firmware() {
  local bin=$1 pattern=$2 limit=${3:-120} elf status=0
  elf=$(elf_of "$bin")
  if [ -z "$elf" ] || [ ! -f "$elf" ]; then
    echo "FAIL: cargo did not report the executable of $bin" >&2
    exit 1
  fi
  echo "== $bin"
  timeout "$limit" qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic -icount shift=0 \
    -semihosting-config enable=on,target=native -kernel "$elf" > "$out/$bin.bin" || status=$?
  defmt-print -e "$elf" --log-format '{L} {s}' < "$out/$bin.bin" > "$out/$bin.log" || true
  cat "$out/$bin.log"
  if [ "$status" -ne 0 ]; then
    echo "FAIL: $bin exited with status $status" >&2
    exit 1
  fi
  # libtest prefixes a finished test's dot (or "test NAME ... ") to the next printed line.
  sed -E 's/^(test [^ ]* \.\.\. |\.+)//' "$out/host-run.log" | grep -E "^($pattern) " > "$out/$bin.host" || true
  sed -E 's/^INFO +//' "$out/$bin.log" | grep -E "^($pattern) " > "$out/$bin.fw" || true
  if [ ! -s "$out/$bin.host" ] || ! diff -u "$out/$bin.host" "$out/$bin.fw"; then
    echo "FAIL: $bin's QEMU results differ from the host runtime's" >&2
    exit 1
  fi
  echo "QEMU results equal the host runtime's bit for bit ($bin)"
  echo "flash used: $(sections "$elf" '^\.(vector_table|text|rodata|data)$') bytes (.vector_table+.text+.rodata+.data); static RAM: $(sections "$elf" '^\.(data|bss|uninit)$') bytes (.data+.bss+.uninit, stack not included)"
}
run_firmware synthesize 'accuracy|mnist8 window|digits window'
run_firmware synthesize-mnist 'mnist accuracy'
run_firmware synthesize-latent 'mnist-latent accuracy'
run_firmware adapt 'adapt' 600
run_firmware shift 'shift threshold|shift mnist8|shift digits' 900
