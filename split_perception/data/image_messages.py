"""sensor_msgs Image/CompressedImage (ROS or rosbags messages) -> RGB numpy, without ROS.

The common encodings (rgb8, bgr8, mono8, rgba8, bgra8) and jpeg/png CompressedImage are
converted here, with numpy and Pillow (no OpenCV: the onboard install leaves it out); anything
else raises ImageError naming the encoding.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ..errors import ImageError

CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}


def image_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image -> RGB uint8 HxWx3."""
    enc = msg.encoding.lower()
    if enc not in CHANNELS:
        raise ImageError(f"unsupported image encoding {msg.encoding!r} (supported: {', '.join(CHANNELS)})")
    c = CHANNELS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h < 1 or w < 1 or step < w * c or len(msg.data) < step * h:
        raise ImageError(f"{msg.encoding} image {w}x{h} with step {step} has {len(msg.data)} bytes")
    buf = np.frombuffer(bytes(msg.data), np.uint8)[: step * h].reshape(h, step)[:, : w * c].reshape(h, w, c)
    if enc == "mono8":
        return np.repeat(buf, 3, axis=2)
    order = {"rgb8": slice(0, 3), "rgba8": slice(0, 3), "bgr8": slice(2, None, -1), "bgra8": slice(2, None, -1)}[enc]
    return buf[:, :, order].copy()  # C-contiguous and writable


def compressed_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> RGB uint8 HxWx3."""
    data = bytes(msg.data)
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.array(img.convert("RGB"))
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad data (and DecompressionBombError)
        raise ImageError(f"cannot decode CompressedImage of format {msg.format!r} ({len(data)} bytes): "
                         f"{type(exc).__name__}") from None


def message_to_rgb(msgtype: str, msg) -> np.ndarray:
    """Either camera message type (by its ROS type name) -> RGB uint8 HxWx3."""
    return compressed_to_rgb(msg) if msgtype.endswith("CompressedImage") else image_to_rgb(msg)


def encoding_of(msgtype: str, msg) -> str:
    """The encoding a frame is counted under: Image's `encoding`, CompressedImage's `format`."""
    return (msg.format if msgtype.endswith("CompressedImage") else msg.encoding) or "?"
