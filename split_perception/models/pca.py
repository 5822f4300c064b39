"""Principal components of split-point features: the PCA baseline's transform and the starting
point of the `front` encoder's projection (channels are the dimension, spatial positions the samples).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ..data.coco import CocoSceneDataset
from ..onboard.preprocess import to_input_tensor

MAX_SAMPLES = 200_000  # feature positions kept for fitting


def positions(z: Tensor) -> Tensor:
    """1 x C x H x W (or C x H x W) features -> (H*W) x C samples."""
    return z.reshape(z.shape[-3], -1).T


def subsample(samples: list[Tensor], limit: int = MAX_SAMPLES, seed: int = 0) -> Tensor:
    """Stack per-image samples and keep at most `limit` rows (fixed seed: reproducible fits)."""
    x = torch.cat(samples).double()
    if len(x) > limit:
        x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:limit]]
    return x


@dataclass
class PCA:
    """Principal components of split-point features, by decreasing variance."""

    mean: Tensor  # C
    basis: Tensor  # C x C, one component per row
    variance: Tensor  # C, eigenvalues

    @classmethod
    def fit(cls, samples: Tensor) -> "PCA":
        """`samples`: N x C feature vectors (positions of training images)."""
        x = samples.double()
        mean = x.mean(0)
        cov = torch.cov((x - mean).T).reshape(x.shape[1], x.shape[1])
        var, vec = torch.linalg.eigh(cov)
        order = torch.argsort(var, descending=True)
        return cls(mean, vec[:, order].T.contiguous(), var[order].clamp_min(0))

    @property
    def channels(self) -> int:
        return len(self.mean)

    def explained(self) -> np.ndarray:
        """Cumulative fraction of the variance kept by the first 1, 2, ... components."""
        v = self.variance.numpy()
        return np.cumsum(v) / max(v.sum(), 1e-30)

    def components_for(self, fraction: float) -> int:
        """Fewest components that keep at least `fraction` of the variance."""
        return int(min(np.searchsorted(self.explained(), fraction - 1e-12) + 1, self.channels))

    def rms(self) -> float:
        """Root mean square of the centred features, per channel: the unit of quantization steps."""
        return float(self.variance.mean().sqrt())

    def project(self, samples: Tensor, n: int) -> Tensor:
        """N x C -> N x n coefficients."""
        return (samples.double() - self.mean) @ self.basis[:n].T

    def reconstruct(self, coefficients: Tensor) -> Tensor:
        """N x n -> N x C."""
        return coefficients @ self.basis[: coefficients.shape[1]] + self.mean


@torch.no_grad()
def training_samples(teacher, root, split_index: int, max_images: int, progress: bool = True) -> Tensor:
    """Split-point features of the teacher on `root`'s first images, as N x C samples (subsampled)."""
    cfg = teacher.cfg
    ds = CocoSceneDataset(root, cfg.input_size, cfg.image_mean, cfg.image_std, max_images)
    teacher.eval()
    feats = []
    for image_id in tqdm(ds.ids, desc=f"fit features k={split_index}", disable=not progress, leave=False):
        x = to_input_tensor(ds.read_rgb(image_id), cfg.input_size, cfg.image_mean, cfg.image_std)[None]
        feats.append(positions(teacher.front(x, split_index)))
    return subsample(feats)
