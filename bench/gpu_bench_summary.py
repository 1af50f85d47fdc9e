"""Prints the table of bench/gpu_bench.sh from its output folder (also after an interrupted run:
every finished job is in OUT/runs.tsv).

    python3 bench/gpu_bench_summary.py OUT PAIRS
"""
import json, os, statistics, sys
out, pairs = sys.argv[1], int(sys.argv[2])
runs = {}
for line in open(os.path.join(out, "runs.tsv")):
    name, wall, rss, gpu, rc = line.rstrip("\n").split("\t")
    runs[name] = dict(wall=float(wall), rss=int(rss), gpu=int(gpu or 0), rc=int(rc))
def js(name):
    r = runs.get(name)
    if not r or r["rc"] != 0:
        return None
    try:
        return json.loads(open(os.path.join(out, f"{name}.json")).read().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
def missing(name):
    if name not in runs:
        return "not run"
    return "timed out" if runs[name]["rc"] == 124 else "FAILED"
def mem(name):
    r = runs[name]
    return f"{r['rss']} MiB host, {r['gpu']} MiB GPU"
def pair(label, i, nmflow, nmflow_name, nmflow_rate, torch_name, rate_key, describe):
    """One pair's line: nmflow's rate (None if its job did not finish) and PyTorch's, and their
    ratio, which it returns (None without both)."""
    t = js(torch_name)
    line = f"{label} pair {i}: "
    line += (f"nmflow {nmflow_rate:.1f} ({describe(nmflow)}, {mem(nmflow_name)}); " if nmflow_rate
             else f"nmflow {missing(nmflow_name)}; ")
    line += (f"pytorch {t[rate_key]:.1f} ({describe(t)}, {mem(torch_name)})" if t
             else f"pytorch {missing(torch_name)}")
    ratio = nmflow_rate / t[rate_key] if nmflow_rate and t else None
    print(line + (f": {ratio:.2f}x" if ratio else ""))
    return ratio


def median(label, ratios):
    ratios = [r for r in ratios if r]
    if ratios:
        print(f"{label} median ratio nmflow / pytorch: {statistics.median(ratios):.2f}x")


print("\n== zoo (model-epochs/s of the whole job; test accuracy mean over runs) ==")
for label in ["mnist", "mnist8"]:
    ratios = []
    for i in range(1, pairs + 1):
        name = f"zoo-{label}-nmflow-{i}"
        n = js(name)
        ratios.append(pair(label, i, n, name, n and n["model_epochs_per_second"],
                           f"zoo-{label}-torch-{i}", "model_epochs_per_second",
                           lambda d: f"{d['runs']} runs, {d['seconds']:.1f} s, acc {100 * d['test_acc_mean']:.2f} %"))
    median(label, ratios)
print("\n== train (steps/s; nmflow marginal between the short and the long run) ==")
for label in ["set", "mlp"]:
    ratios = []
    for i in range(1, pairs + 1):
        s, l = (js(f"train-{label}-nmflow-{k}-{i}") for k in ("short", "long"))
        marginal = None
        if s and l:
            dt = l["steps"] / l["steps_per_second"] - s["steps"] / s["steps_per_second"]
            marginal = (l["steps"] - s["steps"]) / dt if dt > 0 else None
        ratios.append(pair(label, i, l, f"train-{label}-nmflow-long-{i}", marginal,
                           f"train-{label}-torch-{i}", "steps_per_second",
                           lambda d: f"whole loop {d['steps_per_second']:.1f}, loss {d['final_loss']:.3f}"))
    median(label, ratios)
print("\n== other commands ==")
for name in ["sample-cuda", "eval-cuda", "eval-cpu"]:
    r = runs.get(name)
    print(f"{name}: exit {r['rc'] if r else 'not run'}, {r['wall'] if r else 0:.1f} s")
for name in ["eval-cuda", "eval-cpu"]:
    e = js(name)
    if e:
        print(name, " ".join(f"{g['steps']} steps {100 * g['acc_mean']:.3f} %" for g in e["generated"]))
