"""sensor_msgs Image/CompressedImage <-> RGB numpy for the nodes: cv_bridge when importable.

cv_bridge for ROS 2 is not on PyPI; without it, and for the common encodings always, the core's
converter (split_perception.data.image_messages) does the work.
"""

from __future__ import annotations

import numpy as np

from ..data import image_messages
from ..data.image_messages import CHANNELS, compressed_to_rgb
from ..errors import ImageError

try:  # a ROS distro install has it; pip-only installs do not
    from cv_bridge import CvBridge  # type: ignore

    _BRIDGE = CvBridge()
except Exception:  # noqa: BLE001 - any import failure means "not available"
    _BRIDGE = None

__all__ = ["compressed_to_rgb", "image_to_rgb", "rgb_to_image"]


def image_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image -> RGB uint8 HxWx3 (cv_bridge for encodings the core does not convert)."""
    if _BRIDGE is not None and msg.encoding.lower() not in CHANNELS:
        try:
            return _BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8")
        except Exception as exc:  # noqa: BLE001
            raise ImageError(f"cv_bridge cannot convert encoding {msg.encoding!r}: {exc}") from None
    return image_messages.image_to_rgb(msg)


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
