"""The image codecs we compare against (JPEG, WebP, PNG through OpenCV), RGB in and out.

One place for them, so the benchmarks and the probe's CompressedImage publisher send the same bytes.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import ConfigError

# format -> (cv2 extension, quality flag); PNG's "quality" is its zlib level (lossless)
IMAGE_FORMATS = {"jpeg": (".jpg", cv2.IMWRITE_JPEG_QUALITY), "webp": (".webp", cv2.IMWRITE_WEBP_QUALITY),
                 "png": (".png", cv2.IMWRITE_PNG_COMPRESSION)}


def encode_image(rgb: np.ndarray, fmt: str, quality: int) -> bytes:
    """RGB uint8 HxWx3 -> compressed bytes (what a CompressedImage would carry)."""
    if fmt not in IMAGE_FORMATS:
        raise ConfigError(f"image format must be one of {sorted(IMAGE_FORMATS)}, got {fmt!r}")
    ext, flag = IMAGE_FORMATS[fmt]
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [flag, int(quality)])
    if not ok:
        raise ConfigError(f"OpenCV cannot encode {fmt}")
    return buf.tobytes()


def decode_image(data: bytes) -> np.ndarray:
    """Compressed bytes -> RGB uint8."""
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
