"""What every benchmark shares: default datasets, frame sizes, MAC counts (result files: `evaluation/report.py`)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, SplitPerceptionError

# Default datasets a benchmark may create on a fresh clone: path -> (images, seed). The seeds are
# those of the bundled model's README commands, so `fit` holds the first training scenes and `val`
# the held-out ones.
DEFAULT_DATASETS = {"data/synthetic/val": (300, 2), "data/synthetic/fit": (200, 1)}
HELD_OUT_CLIPS = "data/footage/heldout/clips"  # `make footage`: the clips no student of a real detector trains on


def frame_size(text: str) -> tuple[int, int]:
    """`--size WIDTHxHEIGHT` (e.g. 640x480) as (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size must be WIDTHxHEIGHT, e.g. 640x480, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise ConfigError(f"--size must be positive, got {text!r}")
    return w, h


def dataset(path: str | Path) -> Path:
    """A COCO-format dataset folder; the default synthetic ones are rendered on first use."""
    from ..data.synthetic import make_dataset

    root = Path(path)
    if (root / "annotations.json").is_file():
        return root
    key = root.as_posix().rstrip("/")
    if key not in DEFAULT_DATASETS:
        raise SplitPerceptionError(f"no dataset at {root} (expected {root}/annotations.json and images/)")
    n, seed = DEFAULT_DATASETS[key]
    print(f"rendering the default synthetic dataset {root} ({n} scenes, seed {seed}) ...", flush=True)
    make_dataset(root, n, seed=seed)
    return root


def count_macs(fn, *inputs) -> int:
    """Multiply-accumulates of `fn(*inputs)` (FLOPs / 2) as torch's FlopCounterMode sees them.

    Only convolutions and matrix products are counted (activations, NMS, interpolation are not). The
    inputs require gradients while counting, so a teacher whose tail runs on ONNX Runtime at inference
    runs its torch twin here and is counted whole (the counter sees torch operations only).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    inputs = tuple(x.detach().requires_grad_() if torch.is_tensor(x) and x.is_floating_point() else x
                   for x in inputs)
    counter = FlopCounterMode(display=False)
    with torch.enable_grad(), counter:
        fn(*inputs)
    return counter.get_total_flops() // 2


def frames_source(model, data: str | Path | None) -> str | Path:
    """`--data`, or by default where a model's camera frames come from: the held-out clips for a student
    of a real detector (an ONNX teacher), the synthetic held-out scenes for a model of the built-in one."""
    if data:
        return data
    from ..models.checkpoint import read_checkpoint

    return HELD_OUT_CLIPS if read_checkpoint(model)["model_config"].teacher else "data/synthetic/val"


def load_frames(data: str | Path, n: int) -> list:
    """The first `n` frames of `data` as RGB uint8 (camera frames): a COCO-format dataset's images, or a
    folder of clips, `n` frames spread evenly over them (a clip's frames in order)."""
    import cv2

    from ..data.coco import dataset_paths, load_coco
    from ..data.footage import iter_frames
    from .rate_accuracy_real import clips

    root = Path(data)
    if not (root / "annotations.json").is_file() and root.is_dir():
        found = clips(root)
        per_clip = -(-n // len(found))
        return [rgb for clip in found for rgb in iter_frames(clip, max_frames=per_clip)][:n]
    ann, images = dataset_paths(dataset(root))
    coco = load_coco(ann)
    frames = []
    for image_id in sorted(coco.getImgIds())[:n]:
        bgr = cv2.imread(str(images / coco.loadImgs(image_id)[0]["file_name"]), cv2.IMREAD_COLOR)
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return frames
