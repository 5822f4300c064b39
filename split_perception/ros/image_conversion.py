"""sensor_msgs Image/CompressedImage <-> RGB numpy, with cv_bridge when importable.

cv_bridge for ROS 2 is not on PyPI, so the common encodings (rgb8, bgr8, mono8, rgba8, bgra8 and
jpeg/png CompressedImage) have an own converter; anything else raises ImageError.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import ImageError

try:  # a ROS distro install has it; pip-only installs do not
    from cv_bridge import CvBridge  # type: ignore

    _BRIDGE = CvBridge()
except Exception:  # noqa: BLE001 - any import failure means "not available"
    _BRIDGE = None

_CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}


def image_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image -> RGB uint8 HxWx3."""
    enc = msg.encoding.lower()
    if _BRIDGE is not None and enc not in _CHANNELS:
        try:
            return _BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8")
        except Exception as exc:  # noqa: BLE001
            raise ImageError(f"cv_bridge cannot convert encoding {msg.encoding!r}: {exc}") from None
    if enc not in _CHANNELS:
        raise ImageError(f"unsupported image encoding {msg.encoding!r} (supported: {', '.join(_CHANNELS)})")
    c = _CHANNELS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h < 1 or w < 1 or step < w * c or len(msg.data) < step * h:
        raise ImageError(f"{msg.encoding} image {w}x{h} with step {step} has {len(msg.data)} bytes")
    buf = np.frombuffer(bytes(msg.data), np.uint8)[: step * h].reshape(h, step)[:, : w * c].reshape(h, w, c)
    if enc == "rgb8":
        return buf.copy()
    if enc == "bgr8":
        return cv2.cvtColor(buf, cv2.COLOR_BGR2RGB)
    if enc == "mono8":
        return cv2.cvtColor(buf, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(buf, cv2.COLOR_RGBA2RGB if enc == "rgba8" else cv2.COLOR_BGRA2RGB)


def compressed_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> RGB uint8 HxWx3."""
    data = np.frombuffer(bytes(msg.data), np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise ImageError(f"cannot decode CompressedImage of format {msg.format!r} ({data.size} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb_to_image(rgb: np.ndarray, header, encoding: str = "rgb8"):
    """RGB or mono numpy -> sensor_msgs/Image (rgb8 or mono8)."""
    from sensor_msgs.msg import Image

    msg = Image()
    msg.header = header
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    c = 1 if rgb.ndim == 2 else rgb.shape[2]
    msg.step = msg.width * c
    msg.data = np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    return msg
