"""Evaluating every member of a cohort at once: fixed evaluation noise and real set (as the single
run's ``Evaluator``), the batched metrics on the device, one row of metrics per member."""

from __future__ import annotations

import math

import numpy as np
import torch

from ganlab.data.targets_1d import Target1D
from ganlab.data.targets_2d import ConditionalPictureDensity, GaussianMixture2D, PictureDensity
from ganlab.metrics import sample_metrics
from ganlab.metrics.metrics_2d import SLICE_DIRECTIONS
from ganlab.population.batched_metrics import metrics_1d_batched, metrics_2d_batched
from ganlab.population.cohort import Cohort, chunk_budget
from ganlab.training.evaluation import EVAL_SEED_OFFSET

HEADLINE = ("ks", "sliced_w1", "frechet_distance")  # the first a run has is what ranks its members


def headline_key(row: dict[str, float]) -> str:
    return next(key for key in HEADLINE if key in row)


def median_member(rows: list[dict[str, float]], alive: list[bool]) -> int:
    """The live member whose headline metric is the median (the lower middle one for an even count):
    a train.seeds run's median seed, whose artifacts it logs and from which a stopped one is sampled."""
    key = headline_key(rows[0])
    ranked = sorted((row[key], k) for k, (row, ok) in enumerate(zip(rows, alive, strict=True))
                    if ok and math.isfinite(row[key]))
    return ranked[(len(ranked) - 1) // 2][1] if ranked else 0


# What the batched metrics hold per generated sample while they run, at most: 1D sorts and CDFs in
# float64 (about ten [K, n] temporaries); 2D projects every sample onto SLICE_DIRECTIONS axes and sorts
# them (values and indices). Members are measured a chunk at a time so that this stays near
# METRIC_CHUNK_BYTES: unchunked, ring8's 10,000 samples cost 15 MB a member (8 GB at K = 512).
METRIC_BYTES_PER_SAMPLE = {1: 10 * 8, 2: 3 * 8 * SLICE_DIRECTIONS}
METRIC_CHUNK_BYTES = 256 * 2**20


def batched_metrics(fake: torch.Tensor, target, reference: np.ndarray,
                    labels: np.ndarray | None = None) -> dict[str, np.ndarray] | None:
    """Every member's sample metrics from ``fake`` [K, n, dim] (generated for ``labels``, the reference's
    classes, for a conditional target), a chunk of members at a time; None for a target with no batched
    form (its members are measured one scipy call each)."""
    one_d = isinstance(target, Target1D)
    if not one_d and not isinstance(target, (GaussianMixture2D, PictureDensity, ConditionalPictureDensity)):
        return None

    def measure(part: torch.Tensor) -> dict[str, np.ndarray]:
        if one_d:
            return metrics_1d_batched(part.squeeze(-1), target)
        return metrics_2d_batched(part, target, reference, labels)

    budget = chunk_budget(fake.device, METRIC_CHUNK_BYTES)
    size = max(1, budget // (fake.shape[1] * METRIC_BYTES_PER_SAMPLE[target.dim]))
    parts = [measure(fake[start:start + size]) for start in range(0, fake.shape[0], size)]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


class PopulationEvaluator:
    """One per cohort shape: the evaluation noise and real samples (and their classes, which a conditional
    G is asked for: every class is compared like for like) are drawn once, from ``seed``, in the single
    run's order (``Evaluator``)."""

    def __init__(self, cohort: Cohort, n_samples: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed + EVAL_SEED_OFFSET)
        preprocess = cohort.discriminator.member(0).preprocess
        n = n_samples if preprocess.per_sample else preprocess.groups(n_samples) * preprocess.batch_size
        self.noise = cohort.noise.sample(n, generator=gen)
        self.real, real_labels = cohort.target.sample_with_labels(n, generator=gen)
        self.labels = real_labels if cohort.conditioning.classes else None  # G's and D's classes, [n]
        self.reference = self.real.numpy()
        self.labels_np = None if self.labels is None else self.labels.numpy()  # what plots and metrics take

    def evaluate(self, cohort: Cohort) -> tuple[list[dict[str, float]], np.ndarray]:
        """Every member's metrics (its EMA generator against the fixed real set) and samples [K, n, dim]."""
        fake = cohort.generate_eval(self.noise, self.labels)
        real = self.real.to(cohort.device).unsqueeze(0).expand(cohort.members, -1, -1)
        d_real = cohort.d_probability(real, self.labels).cpu()
        d_fake = cohort.d_probability(fake, self.labels).cpu()
        samples = fake.float().cpu().numpy()
        batched = batched_metrics(fake, cohort.target, self.reference, self.labels_np)
        if batched is not None:
            columns = {key: values.tolist() for key, values in batched.items()}
            rows = [{key: float(values[k]) for key, values in columns.items()} for k in range(cohort.members)]
        else:
            rows = [sample_metrics(samples[k], cohort.target, self.reference, self.labels_np, self.labels_np)
                    for k in range(cohort.members)]
        losses = cohort.member_last_losses.tolist()
        for k, row in enumerate(rows):
            row.update(d_real=float(d_real[k]), d_fake=float(d_fake[k]), loss_d=losses[k][0], loss_g=losses[k][1])
        return rows, samples
