"""Sample-quality metrics for every target family, behind one call: :func:`sample_metrics`."""

from __future__ import annotations

import numpy as np

from ganlab.data.image_datasets import ImageDataset
from ganlab.data.targets import Target
from ganlab.metrics.metrics_1d import SAMPLE_METRICS_1D, metrics_1d
from ganlab.metrics.metrics_2d import metrics_2d
from ganlab.metrics.metrics_images import SAMPLE_METRICS_IMAGES, metrics_images

TRAINING_METRICS = ("d_real", "d_fake", "loss_d", "loss_g")  # logged with the sample metrics at every evaluation
SAMPLE_METRICS_2D = ("sliced_w1", "modes", "hq_share", "reverse_kl", "modes_full", "hq_share_full",
                     "reverse_kl_full", "off_density")
# every metric a run can log (per-class ones, e.g. off_density_class0, follow the <metric>_class<k> pattern)
LOGGED_METRICS = (*SAMPLE_METRICS_1D, *SAMPLE_METRICS_2D, *SAMPLE_METRICS_IMAGES, "label_accuracy",
                  *TRAINING_METRICS)
# what a run on each target family (ganlab.data.targets.Target.family) can log, and the metric that ranks its runs
METRICS_BY_FAMILY = {"1d": (*SAMPLE_METRICS_1D, *TRAINING_METRICS), "2d": (*SAMPLE_METRICS_2D, *TRAINING_METRICS),
                     "images": (*SAMPLE_METRICS_IMAGES, "label_accuracy", *TRAINING_METRICS)}
HEADLINE_BY_FAMILY = {"1d": "ks", "2d": "sliced_w1", "images": "frechet_distance"}  # all minimised


def sample_metrics(samples: np.ndarray, target: Target, reference: np.ndarray,
                   labels: np.ndarray | None = None, reference_labels: np.ndarray | None = None) -> dict[str, float]:
    """Quality of (n, dim) generated samples against the target (exact where it can be, else against
    the ``reference`` samples drawn from it)."""
    if isinstance(target, ImageDataset):
        return metrics_images(samples, target, labels)
    if target.dim == 1:
        return metrics_1d(samples.ravel(), target)
    return metrics_2d(samples, target, reference, labels, reference_labels)


def headline(metrics: dict[str, float]) -> str:
    """The few numbers a progress line shows for this kind of target."""
    if "ks" in metrics:
        return (f"KS {metrics['ks']:.4f}  W1/std {metrics['w1_over_std']:.4f}  "
                f"mean {metrics['mean']:.3f} std {metrics['std']:.3f}")
    if "frechet_distance" in metrics:
        line = f"FD {metrics['frechet_distance']:.2f}  class-KL {metrics['class_kl']:.3f}"
        if "label_accuracy" in metrics:
            line += f"  label acc {metrics['label_accuracy']:.1%}"
        return line
    parts = [f"SW1 {metrics['sliced_w1']:.4f}"]
    if "modes" in metrics:
        kl = metrics["reverse_kl"]  # NaN while no sample is high-quality: undefined, not a failure
        kl_text = f"{kl:.3f}" if kl == kl else "- (no HQ sample)"
        parts.append(f"modes {metrics['modes']:.0f}  HQ {metrics['hq_share']:.1%}  rev-KL {kl_text}")
    if "off_density" in metrics:
        parts.append(f"off-density {metrics['off_density']:.1%}")
    return "  ".join(parts)
