#!/usr/bin/env bash
# Builds the QEMU Cortex-M4F example, runs it under qemu-system-arm (mps2-an386) with a time limit,
# decodes its defmt output, and checks that its results equal the host's for the same seeds
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
# Ask cargo where it put the ELF (CARGO_TARGET_DIR or a shared target directory may move it).
elf=$(cargo build --release -q --message-format=json \
  | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
if [ -z "$elf" ] || [ ! -f "$elf" ]; then
  echo "FAIL: cargo did not report the firmware's executable" >&2
  exit 1
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
timeout 120 qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic -icount shift=0 \
  -semihosting-config enable=on,target=native -kernel "$elf" > "$out/raw.bin" || status=$?
defmt-print -e "$elf" --log-format '{L} {s}' < "$out/raw.bin" > "$out/fw.log" || true
cat "$out/fw.log"
if [ "$status" -ne 0 ]; then
  echo "FAIL: firmware exited with status $status" >&2
  exit 1
fi
if ! (cd ../app && cargo test --release -q --test host -- --nocapture) > "$out/host-run.log" 2>&1; then
  cat "$out/host-run.log" >&2
  echo "FAIL: the host run of the application failed" >&2
  exit 1
fi
grep -E '^(accuracy|mnist8 window|digits window)' "$out/host-run.log" > "$out/host.log"
grep -oE '(accuracy|mnist8 window|digits window).*' "$out/fw.log" > "$out/fw-results.log"
if ! diff -u "$out/host.log" "$out/fw-results.log"; then
  echo "FAIL: QEMU results differ from the host runtime's" >&2
  exit 1
fi
echo "QEMU results equal the host runtime's bit for bit (accuracy, prediction hash, statistics)"
sections() {
  local total=0 size
  for size in $(readelf -SW "$elf" | sed 's/^ *\[ *[0-9]*\] *//' | awk -v want="$1" '$1 ~ want {print $5}'); do
    total=$((total + 16#$size))
  done
  echo "$total"
}
flash=$(sections '^\.(vector_table|text|rodata|data)$')
ram=$(sections '^\.(data|bss|uninit)$')
echo "flash used: $flash bytes (.vector_table+.text+.rodata+.data); static RAM: $ram bytes (.data+.bss+.uninit, stack not included)"
