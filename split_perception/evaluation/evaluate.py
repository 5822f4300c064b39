"""Evaluate the teacher and the split model per width on a COCO-format dataset.

The split model is measured through the real path: encode -> packet bytes -> parse -> decode,
so the byte counts are real bitstream sizes (header included), never estimates.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from ..data.coco import CocoSceneDataset
from ..models.teacher import Teacher
from ..offboard.decoder import Detection, OffboardDecoder
from ..onboard.encoder import EncoderRuntime
from ..onboard.preprocess import to_input_tensor
from .metrics import ConfusionMatrix, coco_map, coco_results, semantic_truth

EVAL_SCORE_THRESH = 0.01  # COCO mAP wants the low-score tail too

ImageCodec = Callable[[np.ndarray], tuple[np.ndarray, int]]  # RGB -> (decoded RGB, bytes)
FeatureCodec = Callable[[torch.Tensor], tuple[torch.Tensor, int]]  # features -> (decoded, bytes)


def _summary(ds, results, conf, ids, extra) -> dict:
    return {**coco_map(ds.coco, results, ids), "miou": conf.miou(), "images": len(ids), **extra}


@torch.no_grad()
def evaluate_teacher(teacher: Teacher, root, max_images: int = 0, progress: bool = True,
                     image_codec: ImageCodec | None = None, feature_codec: FeatureCodec | None = None,
                     split_index: int | None = None, desc: str = "eval teacher") -> dict:
    """The accuracy ceiling: the teacher on uncompressed input.

    With `image_codec` (RGB -> (decoded RGB, bytes)) the teacher sees decoded images instead, and
    with `feature_codec` (features -> (decoded features, bytes)) decoded features at the split
    point `split_index` (default: the config's); the summary then adds bytes/frame (mean, p95).
    """
    cfg = teacher.cfg
    ds = CocoSceneDataset(root, cfg.input_size, cfg.image_mean, cfg.image_std, max_images)
    teacher.eval()
    old = teacher.score_thresh
    teacher.score_thresh = EVAL_SCORE_THRESH
    results, sizes, conf = [], [], ConfusionMatrix(cfg.num_classes + 1)
    try:
        for image_id in tqdm(ds.ids, desc=desc, disable=not progress, leave=False):
            rgb = ds.read_rgb(image_id)
            seen, nbytes = image_codec(rgb) if image_codec else (rgb, 0)
            z = teacher.front(to_input_tensor(seen, cfg.input_size, cfg.image_mean, cfg.image_std)[None], split_index)
            if feature_codec:
                z, n = feature_codec(z)
                nbytes += n
            det = teacher.postprocess(teacher.back(z, split_index), [rgb.shape[:2]])[0]
            dets = [Detection(int(lab), cfg.class_names[int(lab) - 1], s, tuple(box)) for box, lab, s
                    in zip(det["boxes"].tolist(), det["labels"].tolist(), det["scores"].tolist())]
            results += coco_results(image_id, dets, ds.cat_ids)
            conf.update(semantic_truth(ds.coco, ds.label_of, image_id, rgb.shape[:2]), det["mask"].numpy())
            sizes.append(nbytes)
    finally:
        teacher.score_thresh = old
    coded = image_codec or feature_codec
    extra = {"bytes_mean": float(np.mean(sizes)), "bytes_p95": float(np.percentile(sizes, 95))} if coded else {}
    return _summary(ds, results, conf, ds.ids, extra)


@torch.no_grad()
def evaluate_split(encoder: EncoderRuntime, decoder: OffboardDecoder, root, widths=None, max_images: int = 0,
                   progress: bool = True) -> dict[float, dict]:
    """Per width: mAP, mAP@.5, mIoU, bytes/frame (mean, p95), encode and decode+heads ms."""
    cfg = encoder.cfg
    ds = CocoSceneDataset(root, cfg.input_size, cfg.image_mean, cfg.image_std, max_images)
    saved = decoder.model.teacher.score_thresh
    decoder.model.teacher.score_thresh = EVAL_SCORE_THRESH
    images = [(i, ds.read_rgb(i)) for i in ds.ids]
    out = {}
    try:
        for width in widths or encoder.widths:
            encoder.set_width(width)
            results, sizes, t_enc, t_dec = [], [], [], []
            conf = ConfusionMatrix(cfg.num_classes + 1)
            for image_id, rgb in tqdm(images, desc=f"eval width {width}", disable=not progress, leave=False):
                t0 = time.perf_counter()
                data = encoder.encode(rgb, frame_id=image_id)
                t1 = time.perf_counter()
                frame = decoder.decode(data)
                t2 = time.perf_counter()
                sizes.append(len(data))
                t_enc.append(t1 - t0)
                t_dec.append(t2 - t1)
                results += coco_results(image_id, frame.detections, ds.cat_ids)
                conf.update(semantic_truth(ds.coco, ds.label_of, image_id, rgb.shape[:2]), frame.mask)
            out[width] = _summary(ds, results, conf, ds.ids, {
                "bytes_mean": float(np.mean(sizes)), "bytes_p95": float(np.percentile(sizes, 95)),
                "encode_ms": 1000 * float(np.median(t_enc)), "decode_ms": 1000 * float(np.median(t_dec)),
            })
    finally:
        decoder.model.teacher.score_thresh = saved
    return out
