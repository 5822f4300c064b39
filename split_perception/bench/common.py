"""What every benchmark shares: machine description, default datasets, MAC counts, result files."""

from __future__ import annotations

import csv
import json
import os
import platform
import time
from pathlib import Path

from ..errors import ConfigError, SplitPerceptionError

# Default datasets a benchmark may create on a fresh clone: path -> (images, seed). The seeds are
# those of the bundled model's README commands, so `fit` holds the first training scenes and `val`
# the held-out ones.
DEFAULT_DATASETS = {"data/synthetic/val": (300, 2), "data/synthetic/fit": (200, 1)}


def machine_info(threads: int) -> dict:
    """Where a figure was measured (goes into every result file)."""
    import torch

    return {"cpus": os.cpu_count(), "threads": threads, "torch": torch.__version__, "machine": platform.machine(),
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}


def command_line(args) -> str:
    """The `split-perception` command that reproduces `args` (every option spelled out)."""
    parts = ["split-perception", args.command] + ([args.bench] if getattr(args, "bench", None) else [])
    for k, v in vars(args).items():
        if k in ("func", "command", "bench") or v is None or v is False:
            continue
        parts += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return " ".join(parts)


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

    Only convolutions and matrix products are counted (activations, NMS, interpolation are not).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn(*inputs)
    return counter.get_total_flops() // 2


def write_results(out_dir: str | Path, name: str, payload: dict, rows: list[dict]) -> list[Path]:
    """`name`.json (payload with the rows) and `name`.csv (the rows) in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js, cs = out / f"{name}.json", out / f"{name}.csv"
    js.write_text(json.dumps({**payload, "rows": rows}, indent=1))
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with cs.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return [js, cs]


def markdown_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Rows as a markdown table; `columns` = (key, title, format spec) in order."""
    lines = ["| " + " | ".join(t for _, t, _ in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = []
        for key, _, fmt in columns:
            v = r.get(key)
            cells.append("-" if v is None or v == "" else format(v, fmt) if fmt else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
