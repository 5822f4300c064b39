"""Drawing: detections and masks onto RGB frames, for annotated outputs."""

from __future__ import annotations

import cv2
import numpy as np

_COLORS = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230]], np.uint8)


def draw_detections(rgb: np.ndarray, detections, mask: np.ndarray | None = None) -> np.ndarray:
    """Copy of `rgb` with boxes, labels and scores (and a translucent class mask if given)."""
    out = rgb.copy()
    if mask is not None:
        colored = _COLORS[(mask.astype(np.int64) - 1) % len(_COLORS)]
        sel = mask > 0
        out[sel] = (0.55 * out[sel] + 0.45 * colored[sel]).astype(np.uint8)
    for d in detections:
        x1, y1, x2, y2 = (int(round(v)) for v in d.box)
        color = tuple(int(c) for c in _COLORS[(d.label_id - 1) % len(_COLORS)])
        cv2.rectangle(out, (x1, y1), (x2, y2), color, 2)
        cv2.putText(out, f"{d.label} {d.score:.2f}", (x1, max(10, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1,
                    cv2.LINE_AA)
    return out
