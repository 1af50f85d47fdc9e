"""Two probes of what a flow can and cannot do to `mlp:784-10-10` classifiers, from a zoo's own
runs (numpy only; BENCHMARKS.md, "The MLP field's output span", issues 13 and 19).

    python3 bench/weight_space_probe.py noise ZOO DATA_DIR fashion   # accuracy vs added noise
    python3 bench/weight_space_probe.py rank  ZOO DATA_DIR mnist     # accuracy vs update rank

`noise`: the test accuracy of 16 trained runs with N(0, s²) added to every first-layer weight,
for the source scales s of the Gaussian-source bases: the noise a field cannot remove costs this
much when nothing adapts to it.
`rank`: each hidden unit's update (its final minus initial input weights, bias and output weights)
projected onto the best k-dimensional subspace (principal components of 384 runs' updates), then
the test accuracy of 64 other runs rebuilt from init + projected update: what a field whose
per-unit output lies in a k-wide subspace (the set field's `--hidden k`) could reach at best.
"""
import glob
import gzip
import json
import struct
import sys

import numpy as np

STATS = {"mnist": (0.1307, 0.3081), "fashion": (0.2860, 0.3530)}
FOLDER = {"mnist": "mnist", "fashion": "fashion-mnist"}


def idx(path):
    b = gzip.open(path).read()
    nd = b[3]
    dims = struct.unpack(">" + "I" * nd, b[4:4 + 4 * nd])
    return np.frombuffer(b[4 + 4 * nd:], dtype=np.uint8).reshape(dims)


def test_set(data_dir, view):
    mean, std = STATS[view]
    x = idx(f"{data_dir}/{FOLDER[view]}/t10k-images-idx3-ubyte.gz").reshape(-1, 784)
    y = idx(f"{data_dir}/{FOLDER[view]}/t10k-labels-idx1-ubyte.gz")
    return (x.astype(np.float32) / 255.0 - mean) / std, y


def zoo_weights(zoo, shards):
    out = []
    for path in sorted(glob.glob(f"{zoo}/shard-*.safetensors"))[:shards]:
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            meta = json.loads(f.read(n))["weights"]
            s, e = meta["data_offsets"]
            f.seek(8 + n + s)
            out.append(np.frombuffer(f.read(e - s), dtype=np.float32).reshape(meta["shape"]))
    return np.concatenate(out)  # [runs, checkpoints, 7960]


def accuracy(w, x, y):
    h = np.maximum(x @ w[:7840].reshape(10, 784).T + w[7840:7850], 0)
    return float(((h @ w[7850:7950].reshape(10, 10).T + w[7950:]).argmax(1) == y).mean())


def tokens(w):
    return np.concatenate(
        [w[:7840].reshape(10, 784), w[7840:7850, None], w[7850:7950].reshape(10, 10).T], 1)


def untokens(t, b2):
    return np.concatenate([t[:, :784].ravel(), t[:, 784], t[:, 785:].T.ravel(), b2])


def main():
    mode, zoo, data_dir, view = sys.argv[1:5]
    x, y = test_set(data_dir, view)
    if mode == "noise":
        w = zoo_weights(zoo, 1)[:16, -1]
        rng = np.random.default_rng(0)
        for s in [0.0, 0.03, 0.05, 0.07, 0.1]:
            accs = []
            for v in w:
                v = v.copy()
                v[:7840] += rng.normal(0.0, s, 7840).astype(np.float32)
                accs.append(accuracy(v, x, y))
            print(f"first-layer noise {s:.2f}: mean accuracy {100 * np.mean(accs):.2f} %")
    elif mode == "rank":
        w = zoo_weights(zoo, 16)
        fit, test = w[:384], w[384:448]
        d = np.concatenate([tokens(r[-1]) - tokens(r[0]) for r in fit])
        mu = d.mean(0)
        _, _, vt = np.linalg.svd(d - mu, full_matrices=False)
        trained = np.mean([accuracy(r[-1], x, y) for r in test])
        print(f"trained runs: {100 * trained:.2f} %")
        for k in [64, 128, 256]:
            p = vt[:k]
            accs = []
            for r in test:
                upd = tokens(r[-1]) - tokens(r[0])
                proj = mu + ((upd - mu) @ p.T) @ p
                accs.append(accuracy(untokens(tokens(r[0]) + proj, r[-1][7950:]), x, y))
            print(f"update rank {k}: {100 * np.mean(accs):.2f} % ({100 * (trained - np.mean(accs)):.2f} pp below)")
    else:
        sys.exit(f"unknown mode {mode!r}: noise or rank")


if __name__ == "__main__":
    main()
