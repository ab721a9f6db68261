"""The minibatch-discrimination layer: ganlab's cdist form against the broadcast form S3 writes
(the (B, B, kernels, kernel_dim) differences materialised; the layer's own ``twice_differentiable``
form, which runs with an R1 penalty), forward + backward on one torch thread,
at the batch sizes a user types. Median of 7 timings per cell, both forms timed in the same run.
"""

from __future__ import annotations

import statistics
import time

import torch

from ganlab.nets.minibatch_discrimination import MinibatchDiscrimination

BATCHES = (64, 256, 1024, 2048)


def _median_ms(fn, repeats: int = 7) -> float:
    fn().sum().backward()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn().sum().backward()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def run(batches: tuple[int, ...] = BATCHES, features: int = 64, kernels: int = 5, kernel_dim: int = 3) -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    layer = MinibatchDiscrimination(features, kernels, kernel_dim)
    broadcast = MinibatchDiscrimination(features, kernels, kernel_dim, twice_differentiable=True)
    broadcast.load_state_dict(layer.state_dict())
    rows = []
    for batch in batches:
        x = torch.randn(batch, features, requires_grad=True)
        cdist_ms = _median_ms(lambda x=x: layer(x))
        broadcast_ms = _median_ms(lambda x=x: broadcast(x))
        rows.append({"batch": batch, "cdist_ms": cdist_ms, "broadcast_ms": broadcast_ms,
                     "speedup": broadcast_ms / cdist_ms})
        print(f"  batch {batch}: cdist {cdist_ms:.2f} ms, broadcast {broadcast_ms:.2f} ms", flush=True)
    return {"features": features, "kernels": kernels, "kernel_dim": kernel_dim, "threads": 1, "rows": rows}


def table(result: dict) -> str:
    lines = ["| batch | cdist form ms | broadcast form ms | speed-up |", "|---|---|---|---|"]
    lines += [f"| {r['batch']} | {r['cdist_ms']:.2f} | {r['broadcast_ms']:.2f} | {r['speedup']:.1f}x |"
              for r in result["rows"]]
    return "\n".join(lines)
