"""Image quality: the Frechet distance in a small classifier's feature space against held-out real
images, and how the generated classes are spread (mode coverage)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from scipy import linalg, stats

from ganlab.data.image_datasets import ImageDataset
from ganlab.metrics.feature_classifier import FeatureClassifier, load_or_train_classifier

SAMPLE_METRICS_IMAGES = ("frechet_distance", "class_kl", "classes_covered")


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(cov1 + cov2 - 2 (cov1 cov2)^(1/2)) between two Gaussians (FID's formula).

    Tr (cov1 cov2)^(1/2) is computed as the sum of square roots of the eigenvalues of the symmetric
    matrix cov1^(1/2) cov2 cov1^(1/2) (same eigenvalues): exact, and stable when dead ReLU features
    make the covariances singular, where a general matrix square root warns and goes complex.
    """
    values, vectors = linalg.eigh(cov1)
    root1 = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    cross = linalg.eigvalsh(root1 @ cov2 @ root1)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * np.sqrt(np.clip(cross, 0, None)).sum())


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features.mean(axis=0), np.cov(features, rowvar=False)


class ImageQuality:
    """Holds the feature classifier and the held-out images' feature statistics."""

    def __init__(self, dataset: ImageDataset, classifier: FeatureClassifier, accuracy: float) -> None:
        self.dataset, self.classifier, self.accuracy = dataset, classifier, accuracy
        self.reference = feature_stats(self.features(dataset.test.numpy()))

    @torch.no_grad()
    def _forward(self, samples: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
        x = torch.as_tensor(samples, dtype=torch.float32)
        feats, preds = [], []
        for i in range(0, len(x), chunk):
            f = self.classifier.features(x[i:i + chunk])
            feats.append(f)
            preds.append(self.classifier.head(f).argmax(1))
        return torch.cat(feats).double().numpy(), torch.cat(preds).numpy()

    def features(self, samples: np.ndarray) -> np.ndarray:
        return self._forward(samples)[0]

    def __call__(self, samples: np.ndarray, labels: np.ndarray | None = None) -> dict[str, float]:
        feats, predicted = self._forward(samples)
        histogram = np.bincount(predicted, minlength=self.dataset.classes) / len(predicted)
        metrics = {
            "frechet_distance": frechet_distance(*feature_stats(feats), *self.reference),
            # KL(generated class histogram || real class weights), as the 2D reverse_kl counts modes
            "class_kl": float(stats.entropy(histogram, self.dataset.class_weights.numpy())),
            "classes_covered": float((histogram > 0).sum()),
        }
        if labels is not None:  # a conditional G: does the classifier read the class it was asked for?
            metrics["label_accuracy"] = float((predicted == labels).mean())
        return metrics


@lru_cache(maxsize=4)
def image_quality(dataset: ImageDataset) -> ImageQuality:
    """One scorer per dataset and process (the classifier is loaded or trained on first use)."""
    return ImageQuality(dataset, *load_or_train_classifier(dataset))


def metrics_images(samples: np.ndarray, dataset: ImageDataset, labels: np.ndarray | None = None) -> dict[str, float]:
    return image_quality(dataset)(samples, labels)
