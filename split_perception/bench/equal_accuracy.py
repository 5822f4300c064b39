"""Bytes at equal accuracy: what each baseline needs to reach each of our widths' mAP (or agreement).

The headline of both rate-accuracy benchmarks (`rate_accuracy.py` on labelled synthetic scenes,
`rate_accuracy_real.py` and `rate_accuracy_video.py` on real footage against the teacher).
"""

from __future__ import annotations

import math

HEADLINE_FAMILIES = ("jpeg", "webp", "pca")
HEADLINE_GROUPS = (("best_image", ("jpeg", "webp")),)  # the fewest bytes of several families, also stored

HOW_HEADLINE = (
    "Bytes at equal accuracy: for each width, the bytes/frame a baseline needs to reach that width's "
    "mAP@[.5:.95]. A baseline's curve is its points sorted by bytes, keeping only those that beat every "
    "cheaper one (its Pareto front); between the two front points that bracket the target mAP, log(bytes) "
    "is interpolated linearly in mAP. '> x' means even the baseline's best point stays below the target "
    "(a lower bound on its bytes), '< x' that its cheapest point already reaches it (an upper bound), "
    "'x-y' a range (best of two baselines, one of them only bounded). Ratio = baseline bytes / our mean "
    "bytes per frame at that width.")


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(bytes, mAP) points sorted by bytes, keeping each that beats the mAP of every cheaper one."""
    front = []
    for b, m in sorted(points, key=lambda p: (p[0], -p[1])):  # of equal bytes, the best comes first
        if not front or m > front[-1][1]:
            front.append((b, m))
    return front


def bytes_at(points: list[tuple[float, float]], target: float) -> tuple[float, float]:
    """Bytes needed to reach mAP `target` along the front of `points`, as (at least, at most).

    Equal bounds when the target lies between two front points; (best point's bytes, inf) when
    even the best point stays below it; (0, cheapest point's bytes) when that already reaches it.
    """
    front = pareto_front(points)
    for i, (b, m) in enumerate(front):
        if m >= target:
            if i == 0:
                return 0.0, b
            (b0, m0) = front[i - 1]
            t = (target - m0) / (m - m0)
            v = math.exp(math.log(b0) + t * (math.log(b) - math.log(b0)))
            return v, v
    return front[-1][0], math.inf


def best_of(estimates: list[tuple[float, float]]) -> tuple[float, float]:
    """The fewest bytes among several baselines' (at least, at most) estimates."""
    return min(lo for lo, _ in estimates), min(hi for _, hi in estimates)


def interval_text(lo: float, hi: float, fmt: str) -> str:
    """'v', '> lo' (no upper bound), '< hi' (no lower bound) or 'lo-hi'."""
    if lo == hi:
        return format(lo, fmt)
    if hi == math.inf:
        return "> " + format(lo, fmt)
    if lo == 0:
        return "< " + format(hi, fmt)
    return f"{lo:{fmt}}-{hi:{fmt}}"


def headline(rows: list[dict], families=HEADLINE_FAMILIES, groups=HEADLINE_GROUPS) -> list[dict]:
    """Per width: our bytes and mAP, and what each baseline family (rows of that `method`) and the best
    of each group of families need for that mAP.

    Each estimate is stored as `<family>_bytes_min`/`_max` and `<family>_ratio_min`/`_max`
    (baseline bytes / ours); a missing upper bound is None.
    """
    curves = {f: [(r["bytes_mean"], r["map"]) for r in rows if r["method"] == f] for f in families}
    out = []
    for r in (r for r in rows if r["method"] == "ours"):
        h = {"width": r["width"], "ours_bytes": r["bytes_mean"], "ours_map": r["map"]}
        found = {f: bytes_at(c, r["map"]) for f, c in curves.items() if c}
        for group, members in groups:
            estimates = [found[f] for f in members if f in found]
            if estimates:
                found[group] = best_of(estimates)
        for f, (lo, hi) in found.items():
            h.update({f"{f}_bytes_min": lo, f"{f}_bytes_max": None if hi == math.inf else hi,
                      f"{f}_ratio_min": lo / r["bytes_mean"],
                      f"{f}_ratio_max": None if hi == math.inf else hi / r["bytes_mean"]})
        out.append(h)
    return out


# headline_table's columns after width, ours' bytes and mAP: (title, stored key, format, suffix)
HEADLINE_COLUMNS = (("JPEG bytes at that mAP", "jpeg_bytes", ".0f", ""), ("WebP bytes", "webp_bytes", ".0f", ""),
                    ("best JPEG/WebP", "best_image_bytes", ".0f", ""),
                    ("best JPEG/WebP / ours", "best_image_ratio", ".1f", "x"),
                    ("PCA-feature bytes", "pca_bytes", ".0f", ""), ("PCA / ours", "pca_ratio", ".2f", "x"))


def headline_table(rows: list[dict], columns=HEADLINE_COLUMNS) -> str:
    lines = ["| width | ours bytes/frame | ours mAP | " + " | ".join(c[0] for c in columns) + " |",
             "|" + "---|" * (3 + len(columns))]

    def cell(h: dict, key: str, fmt: str, suffix: str = "") -> str:
        if f"{key}_min" not in h:
            return "-"
        hi = h[f"{key}_max"]
        return interval_text(h[f"{key}_min"], math.inf if hi is None else hi, fmt) + suffix

    for h in rows:
        cells = [f"{h['width']:g}", f"{h['ours_bytes']:.0f}", f"{100 * h['ours_map']:.1f}",
                 *(cell(h, key, fmt, suffix) for _, key, fmt, suffix in columns)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def agreement_headlines(rows: list[dict], families=HEADLINE_FAMILIES, groups=HEADLINE_GROUPS,
                        columns=HEADLINE_COLUMNS) -> tuple[list[dict], list[dict], str]:
    """The headline of a run scored against the teacher, by agreement mAP@[.5:.95] and by mAP@.5
    (a few detections more or less move the stricter metric a lot on a short clip), and both tables
    with how they are made, as markdown."""
    heads = headline(rows, families, groups)
    heads50 = headline([{**r, "map": r["map50"]} for r in rows], families, groups)
    text = (f"Bytes at equal agreement (mAP@[.5:.95] against the teacher):\n\n{headline_table(heads, columns)}\n\n"
            f"Bytes at equal agreement mAP@.5:\n\n{headline_table(heads50, columns)}\n\n{HOW_HEADLINE}")
    return heads, heads50, text
