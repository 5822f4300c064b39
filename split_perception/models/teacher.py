"""Teacher: torchvision MobileNetV3-Large + SSDlite detection head + LR-ASPP segmentation head.

One backbone serves both tasks. `front` is the part the student replaces (up to the split
point); `back` is the tail and the heads, reused unchanged offboard (split by composition,
as sc2bench's SplittableResNet). With `backbone_width_mult=1.0` the detector's keys and
shapes are those of torchvision's `ssdlite320_mobilenet_v3_large`, so its state dicts load.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import mobilenet_v3_large
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.ssd import SSD
from torchvision.models.detection.ssdlite import (
    SSDLiteHead,
    _mobilenet_extractor,
    _normal_init,
)
from torchvision.models.segmentation.lraspp import LRASPPHead
from torchvision.ops import boxes as box_ops

from ..config import ModelConfig

LOW_INDEX = 6  # stem[6]'s stride-8 output feeds LR-ASPP's low branch


def _norm():
    return partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)


def _mobilenet(cfg: ModelConfig) -> nn.Module:
    return mobilenet_v3_large(weights=None, norm_layer=_norm(), reduced_tail=True, width_mult=cfg.backbone_width_mult)


def _check_split(k: int) -> int:
    if not 1 <= k <= LOW_INDEX + 1:
        raise ValueError(f"split_index must be 1..{LOW_INDEX + 1}: LR-ASPP's low branch reads "
                         f"stem[{LOW_INDEX}], so a later split would have to send it too")
    return k


def front_only(cfg: ModelConfig) -> tuple[nn.Sequential, int]:
    """The layers before the split and their output channels, without the rest of the teacher (for
    an onboard model that holds only its encoder); state dict keys as in `Teacher.front_layers`."""
    layers = _mobilenet(cfg).features[:_check_split(cfg.split_index)]
    return layers, layers[-1].out_channels


class Teacher(nn.Module):
    """Detection + segmentation network on one MobileNetV3 backbone, split at `split_index`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        norm = _norm()
        mbv3 = _mobilenet(cfg)
        _normal_init(mbv3)
        backbone = _mobilenet_extractor(mbv3, 6, norm)
        anchors = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95)
        out_channels = det_utils.retrieve_out_channels(backbone, tuple(cfg.input_size))
        head = SSDLiteHead(out_channels, anchors.num_anchors_per_location(), cfg.num_classes + 1, norm)
        self.det = SSD(
            backbone, anchors, tuple(cfg.input_size), cfg.num_classes + 1, head=head,
            image_mean=list(cfg.image_mean), image_std=list(cfg.image_std),
            score_thresh=cfg.score_thresh, nms_thresh=cfg.nms_thresh,
            detections_per_img=cfg.detections_per_img, topk_candidates=200,
        )
        stem = self.det.backbone.features[0]  # MobileNetV3 features[:c4] + C4 expansion
        self.split_channels = stem[cfg.split_index - 1].out_channels
        low_channels = stem[LOW_INDEX].out_channels
        high_channels = stem[-1].out_channels  # C4 expansion output, stride 16
        self.seg = LRASPPHead(low_channels, high_channels, cfg.num_classes + 1, cfg.seg_inter_channels)

    has_segmentation = True

    @property
    def split_stride(self) -> int:
        return self.cfg.split_stride

    @property
    def score_thresh(self) -> float:
        """Detections below this score are dropped in `postprocess`."""
        return self.det.score_thresh

    @score_thresh.setter
    def score_thresh(self, value: float) -> None:
        self.det.score_thresh = value

    def _split(self, split_index: int | None) -> int:
        return _check_split(self.cfg.split_index if split_index is None else split_index)

    def front_layers(self, split_index: int | None = None) -> nn.Sequential:
        """The layers before the split, as a Sequential that shares the teacher's modules."""
        return self.det.backbone.features[0][: self._split(split_index)]

    def front(self, x: Tensor, split_index: int | None = None) -> Tensor:
        """Normalized images -> features at the split point (what the student must restore).

        `split_index` (default: the config's) picks another split, for analysis.
        """
        return self.front_layers(split_index)(x)

    def back(self, z: Tensor, split_index: int | None = None) -> dict[str, Tensor]:
        """Split-point features -> raw head outputs (SSD regression/logits, segmentation logits)."""
        stem = self.det.backbone.features[0]
        low = z
        x = z
        for i in range(self._split(split_index), len(stem)):
            x = stem[i](x)
            if i == LOW_INDEX:
                low = x
        high = x
        feats = [high]
        x = self.det.backbone.features[1](x)
        feats.append(x)
        for block in self.det.backbone.extra:
            x = block(x)
            feats.append(x)
        out = dict(self.det.head(feats))
        seg = self.seg({"low": low, "high": high})
        out["seg_logits"] = F.interpolate(seg, size=tuple(self.cfg.input_size), mode="bilinear", align_corners=False)
        out["_features"] = feats  # type: ignore[assignment]
        return out

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.back(self.front(x))

    def _anchors(self, out: dict, batch: int) -> list[Tensor]:
        size = tuple(self.cfg.input_size)
        images = ImageList(torch.zeros(batch, 3, *size), [size] * batch)
        return self.det.anchor_generator(images, out["_features"])

    def losses(self, out: dict, targets: list[dict[str, Tensor]], seg_target: Tensor) -> dict[str, Tensor]:
        """SSD box + class losses (torchvision's) and pixel cross-entropy for segmentation."""
        anchors = self._anchors(out, len(targets))
        matched = []
        for anc, tgt in zip(anchors, targets):
            if tgt["boxes"].numel() == 0:
                matched.append(torch.full((anc.size(0),), -1, dtype=torch.int64))
            else:
                matched.append(self.det.proposal_matcher(box_ops.box_iou(tgt["boxes"], anc)))
        head = {"bbox_regression": out["bbox_regression"], "cls_logits": out["cls_logits"]}
        det = self.det.compute_loss(targets, head, anchors, matched)
        seg = F.cross_entropy(out["seg_logits"], seg_target.long())
        return {"bbox": det["bbox_regression"], "cls": det["classification"], "seg": seg}

    @torch.no_grad()
    def postprocess(self, out: dict, orig_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Boxes/labels/scores in original image pixels and a class-id mask at original size."""
        size = tuple(self.cfg.input_size)
        anchors = self._anchors(out, len(orig_sizes))
        head = {"bbox_regression": out["bbox_regression"], "cls_logits": out["cls_logits"]}
        dets = self.det.postprocess_detections(head, anchors, [size] * len(orig_sizes))
        dets = self.det.transform.postprocess(dets, [size] * len(orig_sizes), orig_sizes)
        for d, logits, osz in zip(dets, out["seg_logits"], orig_sizes):
            up = F.interpolate(logits[None], size=osz, mode="bilinear", align_corners=False)
            d["mask"] = up[0].argmax(0).to(torch.uint8)
        return dets
