"""Synthetic scenes rendered with OpenCV, exported as a COCO-format dataset (boxes + masks).

No real data set can be downloaded here, so this feeds the tests, the demo and the bundled
model. Scenes have several shape classes, occlusion, texture, noise, blur and lighting
variation, and are fully deterministic from a seed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from ..config import DEFAULT_CLASSES


@dataclass(frozen=True)
class SceneStyle:
    """How hard the scenes are: object sizes and count, unlabelled clutter, background, motion blur."""

    size_range: tuple[float, float] = (0.09, 0.28)  # object radius, as a fraction of min(height, width)
    max_objects: int = 6
    distractors: int = 0  # up to this many unlabelled textured blobs and bars (clutter)
    textured_background: bool = False  # a colour texture over the background gradient
    motion_blur: float = 0.0  # probability of a linear motion blur of the whole frame


# "hard": smaller and more numerous objects (hence more occlusion), clutter that looks like
# objects, textured backgrounds and motion blur; a held-out set that can tell codecs apart
STYLES = {"default": SceneStyle(),
          "hard": SceneStyle(size_range=(0.04, 0.14), max_objects=14, distractors=6, textured_background=True,
                             motion_blur=0.5)}


@dataclass
class SceneObject:
    label: int  # 1-based category id
    mask: np.ndarray  # HxW bool, visible part after occlusion


def _shape_mask(kind: str, h: int, w: int, rng: np.random.Generator,
                size_range: tuple[float, float] = STYLES["default"].size_range) -> np.ndarray:
    """Draw one filled shape of the given class at a random pose; return an HxW uint8 mask."""
    m = np.zeros((h, w), np.uint8)
    size = rng.uniform(*size_range) * min(h, w)
    cx = rng.uniform(size, w - size)
    cy = rng.uniform(size, h - size)
    angle = rng.uniform(0, 2 * math.pi)

    def poly(radii, n):
        pts = []
        for i in range(n):
            a = angle + 2 * math.pi * i / n
            r = radii[i % len(radii)]
            pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
        return np.round(np.array(pts)).astype(np.int32)

    if kind == "circle":
        axes = (int(size), int(size * rng.uniform(0.8, 1.0)))
        cv2.ellipse(m, (int(cx), int(cy)), axes, math.degrees(angle), 0, 360, 1, -1)
    elif kind == "square":
        cv2.fillPoly(m, [poly([size], 4)], 1)
    elif kind == "triangle":
        cv2.fillPoly(m, [poly([size], 3)], 1)
    elif kind == "star":
        cv2.fillPoly(m, [poly([size, size * 0.45], 10)], 1)
    elif kind == "cross":
        t = size * 0.32
        c, s = math.cos(angle), math.sin(angle)
        for dx, dy in ((size, t), (t, size)):
            rect = np.array([(-dx, -dy), (dx, -dy), (dx, dy), (-dx, dy)])
            rot = rect @ np.array([[c, s], [-s, c]]) + (cx, cy)
            cv2.fillPoly(m, [np.round(rot).astype(np.int32)], 1)
    else:
        raise ValueError(f"unknown shape class {kind!r}")
    return m


def _texture(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A colour texture: flat, stripes, checker or noise, as float32 HxWx3 in [0, 255]."""
    base = rng.uniform(20, 235, size=3)
    other = rng.uniform(20, 235, size=3)
    kind = rng.integers(4)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 0:
        t = np.zeros((h, w), np.float32)
    elif kind == 1:
        period = rng.uniform(4, 14)
        a = rng.uniform(0, math.pi)
        t = (np.sin((xx * math.cos(a) + yy * math.sin(a)) * 2 * math.pi / period) > 0).astype(np.float32)
    elif kind == 2:
        cell = int(rng.integers(4, 12))
        t = (((xx // cell) + (yy // cell)) % 2).astype(np.float32)
    else:
        t = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), rng.uniform(1, 3))
        t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
    return base[None, None] * (1 - t[..., None]) + other[None, None] * t[..., None]


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Gradient plus low-frequency texture plus clutter lines, float32 HxWx3."""
    c0, c1 = rng.uniform(0, 255, size=(2, 3))
    a = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    g = (xx * math.cos(a) + yy * math.sin(a))
    g = (g - g.min()) / max(1e-6, float(g.max() - g.min()))
    img = c0[None, None] * (1 - g[..., None]) + c1[None, None] * g[..., None]
    blobs = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), rng.uniform(4, 12))
    blobs = (blobs - blobs.mean()) / max(1e-6, float(blobs.std()))
    img += blobs[..., None] * rng.uniform(5, 25)
    for _ in range(int(rng.integers(0, 8))):
        p0 = tuple(int(v) for v in rng.integers(0, (w, h)))
        p1 = tuple(int(v) for v in rng.integers(0, (w, h)))
        cv2.line(img, p0, p1, tuple(float(v) for v in rng.uniform(0, 255, 3)), int(rng.integers(1, 4)))
    return img


def _clutter(img: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Up to `count` unlabelled textured blobs and bars painted in place (look-alikes, not objects)."""
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(0, count + 1))):
        m = np.zeros((h, w), np.uint8)
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.uniform(0.02, 0.12) * min(h, w)) + 1
        if rng.random() < 0.5:
            cv2.ellipse(m, (cx, cy), (r, max(1, r // 3)), float(rng.uniform(0, 180)), 0, 360, 1, -1)
        else:
            cv2.line(m, (cx, cy), (int(rng.integers(0, w)), int(rng.integers(0, h))), 1, int(rng.integers(2, 6)))
        blob = m.astype(bool)
        img[blob] = _texture(h, w, rng)[blob]


def _motion_blur(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A linear motion blur: 5-15 px long, any direction."""
    n = int(rng.integers(5, 16))
    k = np.zeros((n, n), np.float32)
    cv2.line(k, (0, n // 2), (n - 1, n // 2), 1.0, 1)
    rot = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), float(rng.uniform(0, 180)), 1.0)
    k = cv2.warpAffine(k, rot, (n, n))
    return cv2.filter2D(img, -1, k / max(float(k.sum()), 1e-6))


def render_scene(
    rng: np.random.Generator,
    size: tuple[int, int] = (240, 320),
    class_names: tuple[str, ...] = DEFAULT_CLASSES,
    style: SceneStyle = STYLES["default"],
    min_visible_px: int = 60,
) -> tuple[np.ndarray, list[SceneObject]]:
    """Render one scene; return (RGB uint8 HxWx3 image, visible objects in paint order)."""
    h, w = size
    img = _background(h, w, rng)
    if style.textured_background:
        img = 0.5 * img + 0.5 * _texture(h, w, rng)
    if style.distractors:
        _clutter(img, rng, style.distractors)
    painted: list[tuple[int, np.ndarray]] = []
    for _ in range(int(rng.integers(1, style.max_objects + 1))):
        label = int(rng.integers(len(class_names)))
        m = _shape_mask(class_names[label], h, w, rng, style.size_range).astype(bool)
        tex = _texture(h, w, rng)
        img[m] = tex[m]
        painted = [(lab, pm & ~m) for lab, pm in painted]  # later objects occlude earlier ones
        painted.append((label + 1, m))
    if style.motion_blur and rng.random() < style.motion_blur:
        img = _motion_blur(img.astype(np.float32), rng)
    # lighting: gain, gamma and a soft vignette-like gradient; then blur and sensor noise
    img = img * rng.uniform(0.6, 1.3) + rng.uniform(-30, 30)
    img = np.clip(img, 0, 255)
    img = 255.0 * (img / 255.0) ** rng.uniform(0.7, 1.4)
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.8))
    img = img + rng.normal(0, rng.uniform(1, 10), img.shape)
    image = np.clip(img, 0, 255).astype(np.uint8)
    objects = [SceneObject(lab, pm) for lab, pm in painted if pm.sum() >= min_visible_px]
    return image, objects


def make_dataset(
    out_dir: str | Path,
    num_images: int,
    seed: int = 0,
    size: tuple[int, int] = (240, 320),
    class_names: tuple[str, ...] = DEFAULT_CLASSES,
    progress: bool = True,
    style: str = "default",
) -> Path:
    """Write `images/*.png` and `annotations.json` (COCO instances, RLE masks); return the json path.

    `style` names one of STYLES ("default", or "hard": small, many, cluttered, blurred objects)."""
    if style not in STYLES:
        raise ValueError(f"unknown scene style {style!r} (one of {', '.join(STYLES)})")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    it = range(num_images)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"scenes -> {out}", unit="img")
    for i in it:
        image, objects = render_scene(rng, size, class_names, STYLES[style])
        name = f"{i:06d}.png"
        cv2.imwrite(str(out / "images" / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        images.append({"id": i + 1, "file_name": name, "height": size[0], "width": size[1]})
        for obj in objects:
            rle = mask_utils.encode(np.asfortranarray(obj.mask.astype(np.uint8)))
            x, y, bw, bh = (float(v) for v in mask_utils.toBbox(rle))
            rle["counts"] = rle["counts"].decode("ascii")
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": obj.label,
                "bbox": [x, y, bw, bh], "area": float(mask_utils.area(rle)),
                "segmentation": rle, "iscrowd": 0,
            })
    coco = {
        "info": {"description": "split_perception synthetic scenes", "seed": seed, "style": style},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": n} for k, n in enumerate(class_names)],
    }
    path = out / "annotations.json"
    path.write_text(json.dumps(coco))
    return path
