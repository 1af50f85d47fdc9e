"""PyTorch CPU reference for `nmflow train` (NM-CFM, natural coupling, MLP field): the same field
(MLP on [x, sinusoidal emb(t)] with SiLU), batch, optimizer and data (a zoo's safetensors shards,
per-block standardization, hidden-unit permutation augmentation). Prints one JSON object with the
training steps per second.
"""
import argparse
import glob
import json
import math
import os
import time

import numpy as np
import torch
from safetensors.numpy import load_file


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--zoo", required=True)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--time-dim", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    args = p.parse_args()
    manifest = json.load(open(os.path.join(args.zoo, "manifest.json")))
    held = set(manifest["split"]["heldout"])
    trajs = []
    for f in sorted(glob.glob(os.path.join(args.zoo, "shard-*.safetensors"))):
        t = load_file(f)
        for i, r in enumerate(t["run"]):
            if int(r) not in held:
                trajs.append(t["weights"][i])
    data = torch.from_numpy(np.stack(trajs))  # [R, K+1, P]
    blocks = manifest["layout"]["blocks"]
    sizes = [int(np.prod(b["shape"])) for b in blocks]
    mean = torch.empty(data.shape[-1])
    std = torch.empty(data.shape[-1])
    off = 0
    for s in sizes:
        chunk = data[..., off:off + s]
        mean[off:off + s] = chunk.mean()
        std[off:off + s] = chunk.std(unbiased=False)
        off += s
    z = (data - mean) / std
    # one-hidden-layer MLP classifier: hidden units permute rows of W1, b1 and columns of W2
    (h, d_in), d_out = blocks[0]["shape"], blocks[2]["shape"][0]
    P = z.shape[-1]
    half = args.time_dim // 2
    freqs = torch.tensor([2 * math.pi * 100 ** (j / max(half - 1, 1)) for j in range(half)])
    widths = [P + args.time_dim] + [args.hidden] * args.depth + [P]
    layers = []
    for i in range(len(widths) - 1):
        layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(torch.nn.SiLU())
    field = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(field.parameters(), lr=args.lr)
    R, K = z.shape[0], z.shape[1] - 1

    def permute(x, perm):
        w1 = x[:, : h * d_in].reshape(-1, h, d_in)
        b1 = x[:, h * d_in: h * d_in + h]
        w2 = x[:, h * d_in + h: h * d_in + h + d_out * h].reshape(-1, d_out, h)
        b2 = x[:, h * d_in + h + d_out * h:]
        idx = perm.unsqueeze(-1)
        w1 = torch.gather(w1, 1, idx.expand(-1, -1, d_in))
        b1 = torch.gather(b1, 1, perm)
        w2 = torch.gather(w2, 2, perm.unsqueeze(1).expand(-1, d_out, -1))
        return torch.cat([w1.reshape(len(x), -1), b1, w2.reshape(len(x), -1), b2], 1)

    def step():
        i = torch.randint(R, (args.batch_size,))
        t = torch.rand(args.batch_size, 1)
        x0, x1 = z[i, 0], z[i, K]
        perm = torch.argsort(torch.rand(args.batch_size, h), 1)
        x0, x1 = permute(x0, perm), permute(x1, perm)
        xt = (1 - t) * x0 + t * x1
        ut = x1 - x0
        ang = t * freqs
        v = field(torch.cat([xt, ang.sin(), ang.cos()], 1))
        loss = ((v - ut) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(20):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        last = step()
    seconds = time.perf_counter() - start
    print(json.dumps({
        "impl": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "steps": args.steps, "seconds": seconds, "steps_per_second": args.steps / seconds,
        "field_params": sum(p.numel() for p in field.parameters()), "final_loss": last,
    }))


if __name__ == "__main__":
    main()
