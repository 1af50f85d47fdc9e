"""PyTorch reference for `nmflow zoo` (same data, scaling, init law, optimizer and batches), on the
CPU or a CUDA GPU (`--device cuda`).

Modes:
  sequential  trains the runs one at a time (nn.Linear, one model per run), as a user would;
  batched     trains all runs at once with a run dimension (torch.bmm), like nmflow.

Prints one JSON object: runs, epochs, seconds, model_epochs_per_second, test_acc_mean/min/max.
"""
import argparse
import gzip
import json
import math
import os
import time

import numpy as np
import torch

MEAN, STD = 0.1307, 0.3081


def load_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndims = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndims).reshape(dims)


def optdigits(images):
    """MNIST images (uint8 [N, 28, 28]) in optdigits' 8×8 form (uint8 [N, 64], values 0..=16), as
    host/src/data/mnist8.rs computes them: binarize at > 127, crop to the ink's bounding box, scale
    the longer side to 32 (nearest neighbour, aspect kept), centre in 32×32, count 4×4 blocks."""
    out = []
    for chunk in np.array_split(images, max(1, len(images) // 10000)):
        on = chunk > 127
        n, side = on.shape[0], on.shape[1]
        rows, cols = on.any(2), on.any(1)
        has = rows.any(1)
        top, bottom = rows.argmax(1), side - 1 - rows[:, ::-1].argmax(1)
        left, right = cols.argmax(1), side - 1 - cols[:, ::-1].argmax(1)
        h, w = (bottom - top + 1)[:, None], (right - left + 1)[:, None]
        longer = np.maximum(h, w)
        sh = np.clip((h * 32 + longer // 2) // longer, 1, 32)
        sw = np.clip((w * 32 + longer // 2) // longer, 1, 32)
        y = np.arange(32)[None, :] - (32 - sh) // 2
        x = np.arange(32)[None, :] - (32 - sw) // 2
        src_r = np.clip(top[:, None] + (2 * y + 1) * h // (2 * sh), 0, side - 1)
        src_c = np.clip(left[:, None] + (2 * x + 1) * w // (2 * sw), 0, side - 1)
        inside = ((y >= 0) & (y < sh))[:, :, None] & ((x >= 0) & (x < sw))[:, None, :]
        frame = on[np.arange(n)[:, None, None], src_r[:, :, None], src_c[:, None, :]]
        frame &= inside & has[:, None, None]
        out.append(frame.reshape(n, 8, 4, 8, 4).sum((2, 4)).reshape(n, 64).astype(np.uint8))
    return np.concatenate(out)


def load_mnist(data_dir, view="mnist"):
    """The train and test splits of `view` (mnist: standardized 784 pixels; mnist8: the 8×8
    optdigits form scaled by 1/16), as (x float32, y int64) tensors."""
    d = os.path.join(data_dir, "mnist")
    def split(prefix):
        x = load_idx(os.path.join(d, f"{prefix}-images-idx3-ubyte.gz"))
        y = load_idx(os.path.join(d, f"{prefix}-labels-idx1-ubyte.gz"))
        if view == "mnist8":
            x = torch.from_numpy(optdigits(x).astype(np.float32)) / 16.0
        else:
            x = (torch.from_numpy(x.reshape(-1, 784).astype(np.float32)) / 255.0 - MEAN) / STD
        return x, torch.from_numpy(y.astype(np.int64))
    return split("train"), split("t10k")


def widths_of(arch):
    assert arch.startswith("mlp:"), "the reference implements mlp:IN-H…-OUT"
    return [int(w) for w in arch[4:].split("-")]


def sequential(args, train, test):
    xtr, ytr = train
    xte, yte = test
    widths = widths_of(args.arch)
    accs = []
    for run in range(args.runs):
        g = torch.Generator().manual_seed(args.seed * 1_000_003 + run)
        torch.manual_seed(args.seed * 1_000_003 + run)
        layers = []
        for i in range(len(widths) - 1):
            layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
            if i < len(widths) - 2:
                layers.append(torch.nn.ReLU())
        model = torch.nn.Sequential(*layers)
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        n = xtr.shape[0]
        for _ in range(args.epochs):
            perm = torch.randperm(n, generator=g)
            for s in range(0, n, args.batch_size):
                idx = perm[s: s + args.batch_size]
                loss = torch.nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        with torch.no_grad():
            model(xtr)  # final train evaluation, as nmflow does
            accs.append((model(xte).argmax(1) == yte).float().mean().item())
    return accs


def batched(args, train, test):
    dev = torch.device(args.device)
    xtr, ytr = (t.to(dev) for t in train)
    xte, yte = (t.to(dev) for t in test)
    widths = widths_of(args.arch)
    r = args.runs
    torch.manual_seed(args.seed)
    params = []
    for i in range(len(widths) - 1):
        bound = 1.0 / math.sqrt(widths[i])
        w = (torch.rand(r, widths[i], widths[i + 1], device=dev) * 2 - 1) * bound
        b = (torch.rand(r, 1, widths[i + 1], device=dev) * 2 - 1) * bound
        params += [w.requires_grad_(), b.requires_grad_()]
    opt = torch.optim.Adam(params, lr=args.lr)

    def forward(x):  # x: [R, B, in]
        h = x
        for i in range(0, len(params), 2):
            h = torch.baddbmm(params[i + 1], h, params[i])
            if i + 2 < len(params):
                h = torch.relu(h)
        return h

    n = xtr.shape[0]
    for _ in range(args.epochs):
        if dev.type == "cpu":
            perms = torch.stack([torch.randperm(n) for _ in range(r)])
        else:  # one launch for all runs' permutations instead of one per run
            perms = torch.argsort(torch.rand(r, n, device=dev), 1)
        for s in range(0, n, args.batch_size):
            idx = perms[:, s: s + args.batch_size]
            logits = forward(xtr[idx])
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), ytr[idx].reshape(-1), reduction="sum"
            ) / idx.shape[1]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    accs = []
    with torch.no_grad():
        for start in range(0, n, 2000):
            forward(xtr[start: start + 2000].expand(r, -1, -1))
        correct = torch.zeros(r, device=dev)
        for start in range(0, xte.shape[0], 2000):
            xb = xte[start: start + 2000]
            correct += (forward(xb.expand(r, -1, -1)).argmax(2) == yte[start: start + 2000]).float().sum(1)
        accs = (correct / xte.shape[0]).tolist()
    return accs


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("mode", choices=["sequential", "batched"])
    p.add_argument("--data-dir", default=os.environ.get("NMFLOW_DATA", "data"))
    p.add_argument("--arch", default="mlp:784-10-10")
    p.add_argument("--runs", type=int, default=16)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", choices=["mnist", "mnist8"], default="mnist")
    p.add_argument("--device", default="cpu", help="cpu, or cuda (batched mode only)")
    args = p.parse_args()
    if args.mode == "sequential" and args.device != "cpu":
        p.error("--device cuda: the sequential mode runs on the CPU only")
    start = time.perf_counter()
    train, test = load_mnist(args.data_dir, args.dataset)
    accs = (sequential if args.mode == "sequential" else batched)(args, train, test)
    seconds = time.perf_counter() - start
    print(json.dumps({
        "impl": f"pytorch-{args.mode}",
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if args.device != "cpu" else "cpu",
        "dataset": args.dataset,
        "threads": torch.get_num_threads(),
        "runs": args.runs,
        "epochs": args.epochs,
        "seconds": seconds,
        "model_epochs_per_second": args.runs * args.epochs / seconds,
        "test_acc_mean": float(np.mean(accs)),
        "test_acc_min": float(np.min(accs)),
        "test_acc_max": float(np.max(accs)),
    }))


if __name__ == "__main__":
    main()
