"""What the PyTorch references of `nmflow train` share: a zoo's training runs standardized per
block, the hidden-unit permutation of one-hidden-layer MLP classifiers, and the timed loop with its
JSON line.
"""
import glob
import json
import os
import time

import numpy as np
import torch
from safetensors.numpy import load_file


def load_zoo(zoo):
    """The training runs of `zoo`, standardized per block: `(z [R, K+1, P], mean [P], std [P],
    manifest)`."""
    manifest = json.load(open(os.path.join(zoo, "manifest.json")))
    held = set(manifest["split"]["heldout"])
    trajs = []
    for f in sorted(glob.glob(os.path.join(zoo, "shard-*.safetensors"))):
        t = load_file(f)
        for i, r in enumerate(t["run"]):
            if int(r) not in held:
                trajs.append(t["weights"][i])
    data = torch.from_numpy(np.stack(trajs))
    mean = torch.empty(data.shape[-1])
    std = torch.empty(data.shape[-1])
    off = 0
    for b in manifest["layout"]["blocks"]:
        s = int(np.prod(b["shape"]))
        chunk = data[..., off:off + s]
        mean[off:off + s] = chunk.mean()
        std[off:off + s] = chunk.std(unbiased=False)
        off += s
    return (data - mean) / std, mean, std, manifest


def permuter(units, d_in, d_out):
    """`permute(x, perm)`: rows of flat weights with hidden unit j replaced by unit perm[:, j]."""
    def permute(x, perm):
        w1 = x[:, : units * d_in].reshape(-1, units, d_in)
        b1 = x[:, units * d_in: units * d_in + units]
        w2 = x[:, units * d_in + units: units * d_in + units + d_out * units].reshape(-1, d_out, units)
        b2 = x[:, units * d_in + units + d_out * units:]
        w1 = torch.gather(w1, 1, perm.unsqueeze(-1).expand(-1, -1, d_in))
        b1 = torch.gather(b1, 1, perm)
        w2 = torch.gather(w2, 2, perm.unsqueeze(1).expand(-1, d_out, -1))
        return torch.cat([w1.reshape(len(x), -1), b1, w2.reshape(len(x), -1), b2], 1)
    return permute


def timed(step, steps, warmup, field, device="cpu"):
    """Runs `warmup` untimed steps, then times `steps`, and prints the JSON line. `step` returns
    its loss as a tensor; the loss is read once, after the last step (on a GPU, reading it every
    step would wait for the device each time), and the device is synchronized before each clock
    read."""
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        last = step()
    last = float(last)
    sync()
    seconds = time.perf_counter() - start
    print(json.dumps({
        "impl": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "steps": steps, "seconds": seconds, "steps_per_second": steps / seconds,
        "field_params": sum(p.numel() for p in field.parameters()), "final_loss": last,
    }))
