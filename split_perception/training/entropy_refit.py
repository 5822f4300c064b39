"""Refit a trained student's entropy models to the bottlenecks its frozen encoder now produces.

During joint training the factorized densities chase a moving encoder at the network's learning
rate; after it they can be much wider than the bottleneck they code (a channel of std 0.2 that
costs a bit per element). With the encoder frozen, its outputs are computed once per image and the
densities (and their quantiles) are fitted to them alone: fewer bytes for the same packets' content.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from tqdm import tqdm

from ..data.coco import CocoSceneDataset
from ..errors import ConfigError
from ..models.encoder import FrontProjectionEncoder
from ..models.split_model import SplitModel
from ..onboard.preprocess import model_input_tensor


@torch.no_grad()
def rescale_gain(model: SplitModel, width: float, factor: float) -> None:
    """Move one width along the rate axis: its gain times `factor`, its decoder's first convolution
    times 1/`factor`. The decoder then sees the same signal, quantized finer (factor > 1: more
    bytes) or coarser (factor < 1: fewer), as the gain units of variable-rate image codecs do.
    Refit that width's entropy model afterwards: its density was fitted to the old scale."""
    if not isinstance(model.encoder, FrontProjectionEncoder):
        raise ConfigError("only an `encoder: front` model has a gain per width to rescale")
    if not 0.1 <= factor <= 10:
        raise ConfigError(f"a gain factor must be in [0.1, 10], got {factor}")
    if model.cfg.shared_decoder:
        raise ConfigError("a shared decoder serves every width: one width's gain cannot be moved alone")
    i = model.width_index_of(width)
    model.encoder.gain[i].mul_(factor)
    model.decoder_for(i).scale_input(factor)


@torch.no_grad()
def bottlenecks(model: SplitModel, root: str, max_images: int, progress: bool = True) -> list[Tensor]:
    """Unquantized bottleneck of each training image, one N x C_w x h x w tensor per width."""
    cfg = model.cfg
    if cfg.teacher:  # an ONNX teacher's student: footage views as it was trained on (no labels)
        from .distill import footage_views

        frames = footage_views([root], frame_stride=3, crops_per_photo=1, seed=1, max_views=max_images)
    else:
        ds = CocoSceneDataset(root, cfg.input_size, cfg.image_mean, cfg.image_std, max_images)
        frames = (ds.read_rgb(image_id) for image_id in ds.ids)
    model.eval()
    per_width: list[list[Tensor]] = [[] for _ in model.widths]
    for rgb in tqdm(frames, desc="bottlenecks", disable=not progress, leave=False):
        x = model_input_tensor(rgb, cfg)
        f = model.encoder.front(x) if isinstance(model.encoder, FrontProjectionEncoder) else None
        for i, w in enumerate(model.widths):
            model.set_width(w)
            per_width[i].append(model.encoder(x) if f is None else model.encoder.project(f))
    model.set_width(model.widths[-1])
    return [torch.cat(ys) for ys in per_width]


@torch.no_grad()
def coded_bytes(model: SplitModel, i: int, y: Tensor) -> float:
    """Mean bytes of the strings that width `i`'s latent codec writes for `y` (real rANS output)."""
    model.latent_codecs[i].eval()
    return sum(len(s) for s in model.latent_codecs[i].compress(y)["strings"][0]) / len(y)


@torch.no_grad()
def count_contexts(model: SplitModel, i: int, y: Tensor) -> None:
    """Count width `i`'s symbols of the bottlenecks `y` per (channel, context), then build its tables."""
    model.latent_codecs[i].count(y)
    model.latent_codecs[i].update(force=True)


def refit_entropy(model: SplitModel, root: str, max_images: int = 1000, steps: int = 2000, batch_size: int = 16,
                  lr: float = 1e-3, aux_lr: float = 1e-2, held_out: float = 0.1, seed: int = 0,
                  progress: bool = True) -> dict[str, dict[str, float]]:
    """Fit every width's density to its cached bottlenecks, then count its symbols per context;
    return bytes/image before and after.

    The last `held_out` fraction of the images is not fitted on; bytes are reported there. Only the
    entropy models change, so the encoder's packets carry the same symbols and the decoders see
    the same inputs (up to the quantization offsets, which follow the refitted medians).
    `steps=0` keeps the densities and only counts the contexts.
    """
    ys = bottlenecks(model, root, max_images, progress)
    n_fit = max(1, int(len(ys[0]) * (1 - held_out)))
    g = torch.Generator().manual_seed(seed)
    report = {}
    for i, w in enumerate(model.widths):
        fit, check = ys[i][:n_fit], ys[i][n_fit:] if n_fit < len(ys[i]) else ys[i]
        before = coded_bytes(model, i, check)
        eb = model.latent_codecs[i].entropy_bottleneck
        density = [p for n, p in eb.named_parameters() if not n.endswith("quantiles")]
        opt = torch.optim.Adam(density, lr=lr)
        aux_opt = torch.optim.Adam([eb.quantiles], lr=aux_lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / max(1, steps))))
        eb.train()
        bar = tqdm(range(steps), desc=f"refit width {w}", disable=not progress, leave=False)
        for _ in bar:
            idx = torch.randint(0, len(fit), (min(batch_size, len(fit)),), generator=g)
            _, likelihoods = eb(fit[idx])
            loss = -torch.log2(likelihoods).sum() / len(idx) / 8
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            aux_opt.zero_grad(set_to_none=True)
            eb.loss().backward()
            aux_opt.step()
            bar.set_postfix(bytes=f"{loss.item():.0f}")
        try:
            count_contexts(model, i, fit)
        except ValueError as exc:  # a density that diverged (NaN) has no CDF table
            raise ConfigError(f"width {w}: the refitted density has no valid table ({exc}); try a lower --lr "
                              f"or a smaller --gain") from None
        report[str(w)] = {"bytes_before": round(before, 1), "bytes_after": round(coded_bytes(model, i, check), 1)}
    model.eval()
    return report
