"""PyTorch reference for `nmflow train` (NM-CFM, natural coupling, MLP field), on the CPU or a CUDA
GPU (`--device cuda`): the same field (MLP on [x, sinusoidal emb(t)] with SiLU), batch, optimizer
and data (a zoo's safetensors shards, per-block standardization, hidden-unit permutation
augmentation). Prints one JSON object with the training steps per second.
"""
import argparse
import math

import torch

from torch_common import load_zoo, permuter, timed


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--zoo", required=True)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--time-dim", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args()
    dev = torch.device(args.device)
    z, _, _, manifest = load_zoo(args.zoo)
    z = z.to(dev)
    blocks = manifest["layout"]["blocks"]
    # one-hidden-layer MLP classifier: hidden units permute rows of W1, b1 and columns of W2
    (h, d_in), d_out = blocks[0]["shape"], blocks[2]["shape"][0]
    P = z.shape[-1]
    half = args.time_dim // 2
    freqs = torch.tensor([2 * math.pi * 100 ** (j / max(half - 1, 1)) for j in range(half)],
                         device=dev)
    widths = [P + args.time_dim] + [args.hidden] * args.depth + [P]
    layers = []
    for i in range(len(widths) - 1):
        layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(torch.nn.SiLU())
    field = torch.nn.Sequential(*layers).to(dev)
    opt = torch.optim.Adam(field.parameters(), lr=args.lr)
    R, K = z.shape[0], z.shape[1] - 1

    permute = permuter(h, d_in, d_out)

    def step():
        i = torch.randint(R, (args.batch_size,), device=dev)
        t = torch.rand(args.batch_size, 1, device=dev)
        x0, x1 = z[i, 0], z[i, K]
        perm = torch.argsort(torch.rand(args.batch_size, h, device=dev), 1)
        x0, x1 = permute(x0, perm), permute(x1, perm)
        xt = (1 - t) * x0 + t * x1
        ut = x1 - x0
        ang = t * freqs
        v = field(torch.cat([xt, ang.sin(), ang.cos()], 1))
        loss = ((v - ut) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    timed(step, args.steps, 20, field, args.device)


if __name__ == "__main__":
    main()
