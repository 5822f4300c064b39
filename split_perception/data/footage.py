"""Real footage as one stream of RGB uint8 frames, whatever it is stored as.

A source is a folder of images, a single image, a video file (anything OpenCV's VideoCapture
opens), or a rosbag2 (folder, bare .mcap or .db3) with a camera topic. Training, evaluation and
`make-bag --video` all read footage through `iter_frames`, so each failure mode (missing path,
unreadable format, empty video or folder, bag without a camera topic) is one FootageError with one
message, wherever it happens. No torch here: the onboard install can read footage too.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import ConfigError, FootageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")
BAG_SUFFIXES = (".mcap", ".db3")


def source_kind(path: str | Path) -> str:
    """"images" (a folder of them, or one), "bag" or "video"; FootageError when the path is missing."""
    path = Path(path)
    if not path.exists():
        raise FootageError(f"footage not found: {path}")
    if path.is_dir():
        bag = (path / "metadata.yaml").is_file() or any(p.suffix in BAG_SUFFIXES for p in path.iterdir())
        return "bag" if bag else "images"
    if path.suffix.lower() in BAG_SUFFIXES:
        return "bag"
    return "images" if path.suffix.lower() in IMAGE_SUFFIXES else "video"


def iter_frames(source: str | Path, stride: int = 1, max_frames: int = 0, topic: str | None = None
                ) -> Iterator[np.ndarray]:
    """RGB uint8 HxWx3 frames of `source` in order: every `stride`-th frame, at most `max_frames`
    of them (0 = all); `topic` picks a bag's camera topic (default: its first).

    A missing path raises at once; the other failures when the first frame is asked for."""
    if stride < 1 or max_frames < 0:
        raise ConfigError(f"stride must be >= 1 and max_frames >= 0, got {stride} and {max_frames}")
    kind = source_kind(source)
    frames = {"images": _image_frames, "video": _video_frames, "bag": _bag_frames}[kind](Path(source), stride, topic)
    return islice(frames, max_frames or None)


def video_fps(path: str | Path) -> float | None:
    """The frame rate a video file declares; None for image folders, bags and videos declaring none."""
    if source_kind(path) != "video":
        return None
    import cv2

    cap = _open_video(Path(path))
    try:
        fps = cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()
    return float(fps) if fps and np.isfinite(fps) and fps > 0 else None


def _open_video(path: Path):
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise FootageError(f"{path}: unreadable format (not a video OpenCV opens, an image folder or a rosbag2)")
    return cap


def _image_frames(path: Path, stride: int, _topic) -> Iterator[np.ndarray]:
    import cv2

    files = [path] if path.is_file() else sorted(
        p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FootageError(f"{path}: folder has no images ({', '.join(IMAGE_SUFFIXES)})")
    for f in files[::stride]:
        bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FootageError(f"{f}: unreadable image (not a format OpenCV decodes, or damaged)")
        yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _video_frames(path: Path, stride: int, _topic) -> Iterator[np.ndarray]:
    import cv2

    cap = _open_video(path)
    try:
        index = 0
        while True:
            ok, bgr = cap.read() if index % stride == 0 else (cap.grab(), None)
            if not ok:
                if index == 0:
                    raise FootageError(f"{path}: video has zero frames")
                return
            if bgr is not None:
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        cap.release()


def _bag_frames(path: Path, stride: int, topic: str | None) -> Iterator[np.ndarray]:
    from .bags import BagError, read_images
    from .image_messages import message_to_rgb

    try:
        for i, m in enumerate(read_images(path, topic)):
            if i % stride == 0:
                yield message_to_rgb(m.msgtype, m.msg)
    except BagError as exc:  # missing/other camera topic, damage: one error type for every source
        raise FootageError(str(exc)) from None
