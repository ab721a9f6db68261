"""S1's experiment (``experiment=devnag_moments``) as a bare PyTorch script, for the whole-process
overhead benchmark: what a user would write by hand, importing nothing but torch.

Same work as ganlab's run: U(0, 1) noise -> N(4, 1.25); G 1-5-5-1 tanh; D sees [mean, std, skewness,
excess kurtosis] of each batch of 500 through 10-10 sigmoid layers; BCE on logits; SGD 1e-3 momentum
0.9; each iteration 20 D steps then 20 G steps; every 100 iterations the mean and std of 20,000
generated samples (what S1 prints). No tracking, plots or checkpoints: those are ganlab's extra work.

    python benchmarks/bare_devnag.py 1000
"""

from __future__ import annotations

import sys

import torch
from torch import nn
from torch.nn import functional as F


def moments(batch: torch.Tensor) -> torch.Tensor:
    mean = batch.mean()
    centered = batch - mean
    std = centered.pow(2).mean().sqrt().clamp_min(1e-8)
    z = centered / std
    return torch.stack([mean, std, z.pow(3).mean(), z.pow(4).mean() - 3.0]).unsqueeze(0)


def main(iterations: int) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    g = nn.Sequential(nn.Linear(1, 5), nn.Tanh(), nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 1))
    d = nn.Sequential(nn.Linear(4, 10), nn.Sigmoid(), nn.Linear(10, 10), nn.Sigmoid(), nn.Linear(10, 1))
    opt_d = torch.optim.SGD(d.parameters(), lr=1e-3, momentum=0.9)
    opt_g = torch.optim.SGD(g.parameters(), lr=1e-3, momentum=0.9)
    n, ones, zeros = 500, torch.ones(1, 1), torch.zeros(1, 1)
    for it in range(1, iterations + 1):
        for _ in range(20):
            real = torch.randn(n, 1) * 1.25 + 4.0
            with torch.no_grad():
                fake = g(torch.rand(n, 1))
            loss_d = (F.binary_cross_entropy_with_logits(d(moments(real)), ones)
                      + F.binary_cross_entropy_with_logits(d(moments(fake)), zeros))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        for _ in range(20):
            loss_g = F.binary_cross_entropy_with_logits(d(moments(g(torch.rand(n, 1)))), ones)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
        if it % 100 == 0:
            with torch.no_grad():
                samples = g(torch.rand(20_000, 1))
            print(f"{it}: D {loss_d.item():.3f} G {loss_g.item():.3f} mean {samples.mean().item():.3f} "
                  f"std {samples.std().item():.3f}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
