"""PyTorch reference for `nmflow train`'s functional recipe on a one-hidden-layer MLP zoo, on the CPU
or a CUDA GPU (`--device cuda`): the permutation-equivariant set field (hidden units as tokens,
DeepSets pooling, residual blocks, a pooled head for the output bias), NM-CFM with the natural
coupling and hidden-unit permutation augmentation, plus the functional term on the sampler itself
(K Euler steps from fresh Kaiming-uniform source samples, backpropagated through every step, then
the generated classifiers' cross-entropy on a minibatch of training images). The same shapes,
batch, optimizer and data as `nmflow train --field set`; the learning rate is constant (a schedule
does not change the cost of a step). Prints one JSON object with the training steps per second.
"""
import argparse
import math

import torch

from torch_common import load_zoo, permuter, timed
from torch_zoo import load_mnist


class SetField(torch.nn.Module):
    """Mirrors host/src/meta/field.rs `SetField::forward`."""

    def __init__(self, units, d_in, d_out, hidden, depth, time_dim):
        super().__init__()
        tok = d_in + 1 + d_out
        self.units, self.d_in, self.d_out = units, d_in, d_out
        lin = torch.nn.Linear
        self.embed = lin(tok, hidden)
        self.global_in = lin(d_out, hidden)
        self.time_in = lin(time_dim, hidden)
        self.blocks = torch.nn.ModuleList(
            torch.nn.ModuleList([lin(hidden, hidden), lin(hidden, hidden), lin(hidden, hidden)])
            for _ in range(depth))
        self.token_out = lin(hidden, tok)
        self.global_out = lin(hidden, d_out)
        half = time_dim // 2
        self.register_buffer("freqs", torch.tensor(
            [2 * math.pi * 100 ** (j / max(half - 1, 1)) for j in range(half)]))

    def forward(self, x, t):
        u, d_in, d_out = self.units, self.d_in, self.d_out
        n = x.shape[0]
        w1 = x[:, : u * d_in].reshape(n, u, d_in)
        b1 = x[:, u * d_in: u * d_in + u].reshape(n, u, 1)
        w2 = x[:, u * d_in + u: u * d_in + u + d_out * u].reshape(n, d_out, u).transpose(1, 2)
        b2 = x[:, u * d_in + u + d_out * u:]
        tokens = torch.cat([w1, b1, w2], 2)
        ang = t * self.freqs
        context = (self.time_in(torch.cat([ang.sin(), ang.cos()], 1)) + self.global_in(b2))
        context = context.unsqueeze(1)
        h = self.embed(tokens) + context
        for local, pooled, mlp in self.blocks:
            z = torch.nn.functional.silu(local(h) + pooled(h.mean(1, keepdim=True)) + context)
            h = h + mlp(z)
        v = self.token_out(torch.nn.functional.silu(h))
        vg = self.global_out(torch.nn.functional.silu(h.mean(1) + context.squeeze(1)))
        return torch.cat([v[:, :, :d_in].reshape(n, -1), v[:, :, d_in],
                          v[:, :, d_in + 1:].transpose(1, 2).reshape(n, -1), vg], 1)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--zoo", required=True)
    p.add_argument("--data-dir", default="data")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--time-dim", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--functional-weight", type=float, default=2.0)
    p.add_argument("--functional-batch", type=int, default=256)
    p.add_argument("--functional-rollout", type=int, default=4)
    p.add_argument("--functional-samples", type=int, default=32)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args()
    dev = torch.device(args.device)
    z, mean, std, manifest = load_zoo(args.zoo)
    z, mean, std = z.to(dev), mean.to(dev), std.to(dev)
    assert manifest["config"]["dataset"] == "mnist", "the reference reads the mnist view"
    blocks = manifest["layout"]["blocks"]
    bound = torch.cat([torch.full((int(math.prod(b["shape"])),), b["bound"]) for b in blocks]).to(dev)
    (u, d_in), d_out = blocks[0]["shape"], blocks[2]["shape"][0]
    field = SetField(u, d_in, d_out, args.hidden, args.depth, args.time_dim).to(dev)
    opt = torch.optim.Adam(field.parameters(), lr=args.lr)
    (xtr, ytr), _ = load_mnist(args.data_dir)
    xtr, ytr = xtr.to(dev), ytr.to(dev)
    onehot = torch.nn.functional.one_hot(ytr, 10).float()
    R, K = z.shape[0], z.shape[1] - 1

    permute = permuter(u, d_in, d_out)

    def cross_entropy(w_std):
        w = w_std * std + mean
        n = w.shape[0]
        w1 = w[:, : u * d_in].reshape(n, u, d_in)
        b1 = w[:, u * d_in: u * d_in + u]
        w2 = w[:, u * d_in + u: u * d_in + u + d_out * u].reshape(n, d_out, u)
        b2 = w[:, u * d_in + u + d_out * u:]
        idx = torch.randint(xtr.shape[0], (args.functional_batch,), device=dev)
        x, y = xtr[idx], onehot[idx]
        h = torch.relu(torch.einsum("md,nud->nmu", x, w1) + b1.unsqueeze(1))
        logits = torch.einsum("nmu,nou->nmo", h, w2) + b2.unsqueeze(1)
        return -(torch.log_softmax(logits, 2) * y).sum() / (args.functional_batch * n)

    def step():
        i = torch.randint(R, (args.batch_size,), device=dev)
        t = torch.rand(args.batch_size, 1, device=dev)
        perm = torch.argsort(torch.rand(args.batch_size, u, device=dev), 1)
        x0, x1 = permute(z[i, 0], perm), permute(z[i, K], perm)
        xt = (1 - t) * x0 + t * x1
        loss = ((field(xt, t) - (x1 - x0)) ** 2).mean()
        if args.functional_weight > 0:
            n = args.functional_samples
            s = ((torch.rand(n, z.shape[-1], device=dev) * 2 - 1) * bound - mean) / std
            for j in range(args.functional_rollout):
                s = s + field(s, torch.full((n, 1), j / args.functional_rollout, device=dev)) \
                    / args.functional_rollout
            loss = loss + args.functional_weight * cross_entropy(s)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    timed(step, args.steps, 10, field, args.device)


if __name__ == "__main__":
    main()
