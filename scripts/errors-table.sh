#!/usr/bin/env bash
# Rebuilds docs/errors.md from the bad-input test suite (host/tests/bad_input.rs): every case's
# command, exit code and the first line the binary printed, as the tests ran them.
set -euo pipefail
cd "$(dirname "$0")/.."
table=$(mktemp)
trap 'rm -f "$table"' EXIT
NMFLOW_ERRORS_TABLE="$table" cargo test --release -q -p nmflow-host --test bad_input >/dev/null
python3 - "$table" docs/errors.md <<'PY'
import re, sys
tmp = re.compile(r"/tmp/nmflow-test-[0-9]+-[A-Za-z0-9-]+")
rows = sorted(set(tuple(tmp.sub("DIR", l.rstrip("\n")).split("\t")) for l in open(sys.argv[1]) if l.strip()),
              key=lambda r: (r[1].split()[0], r[0], r[1]))
esc = lambda s: s.replace("|", "\\|")
out = open(sys.argv[2], "w")
out.write("""# Errors: what nmflow does with bad input

Every command checks its input before it writes anything, and says in one line what is wrong:
which option (or which file and key), the value it got and what it expected. It never panics on
input, and a run that fails leaves every file that existed before as it was.

## Exit codes

| code | meaning | examples |
|---|---|---|
| 0 | success | |
| 1 | failure: missing, corrupt, altered or conflicting files, data that cannot be fetched, an output in use by another job | a model directory whose weights were altered; a zoo folder another job writes into |
| 2 | usage: a setting out of range, an unknown name, settings that do not fit the zoo or the model | `--lr 0`, `--dataset cifar10`, `--field set` on a two-hidden-layer classifier |

## What protects finished work

- Outputs are written to a temporary name, synced, renamed into place, and the folder is synced.
- No command replaces finished work or an existing file without `--force`: `zoo` (a zoo with other
  settings), `train` (a finished or interrupted model with other settings; a non-empty folder that
  holds no model), `sample` and `export` (an existing `--out` file).
- A marker written last tells finished results from unfinished ones: a zoo's `manifest.json`, a
  model's `train.json`; `sample`, `eval` and `export` refuse a model directory without it.
- Checksums written with every artifact a later command trusts, verified by its reader: a zoo's
  shards (the manifest's SHA-256, and `shard-NNNNN.sha256` from the moment a shard is written, so
  a shard altered while the job was interrupted is not adopted on resume), a model's weights
  (`field_sha256` in `train.json`), a training checkpoint (`checksums.json`, verified before
  resuming).
- A lock file (`.nmflow.lock` with the process id) in every folder a `zoo` or `train` job writes
  into: a second job on the same folder gets "in use by process N"; a lock left by a killed job is
  taken over.
- Sizes that cannot fit are refused before anything is allocated: classifiers over 16,777,216
  parameters, field networks over 268,435,456, a zoo shard over 8 GiB.

## The cases the tests run

Made by `scripts/errors-table.sh` from `host/tests/bad_input.rs` (each case also checks that no
panic or backtrace appears and that no file changed); `DIR` is the test's folder.

| command | exit | message |
|---|---|---|
""")
for code, cmd, msg in rows:
    out.write(f"| `nmflow {esc(cmd)}` | {code} | {esc(msg.removeprefix('error: '))} |\n")
out.write(f"\n{len(rows)} cases.\n")
PY
echo "docs/errors.md: $(grep -c '^| `nmflow' docs/errors.md) cases"
