"""Result files, markdown tables and plot axes that evaluation commands and benchmarks share.

`split-perception eval`'s table (the README's tables come from here), `eval-bag`'s result files and
every benchmark's JSON/CSV/markdown are written by the functions below.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import time
from pathlib import Path


def machine_info(threads: int) -> dict:
    """Where a figure was measured (goes into every result file)."""
    import torch

    return {"cpus": os.cpu_count(), "threads": threads, "torch": torch.__version__, "machine": platform.machine(),
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}


def command_line(args) -> str:
    """The `split-perception` command that reproduces `args` (every option spelled out; a `--model` left
    out is written as the default model's name, so the record says which model ran)."""
    from ..model_files import DEFAULT_MODEL_NAME

    parts = ["split-perception", args.command] + ([args.bench] if getattr(args, "bench", None) else [])
    for k, v in vars(args).items():
        if k == "model" and v is None:
            v = DEFAULT_MODEL_NAME
        if k in ("func", "command", "bench") or v is None or v is False:
            continue
        parts += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return " ".join(parts)


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


EVAL_COLUMNS = [("model", "model", ""), ("width", "width", ".2f"), ("bytes_mean", "bytes/frame (mean)", ".0f"),
                ("bytes_p95", "bytes p95", ".0f"), ("encode_ms", "onboard encode ms", ".1f"),
                ("decode_ms", "offboard decode+heads ms", ".1f"), ("map", "mAP@[.5:.95]", ".1f"),
                ("map50", "mAP@.5", ".1f"), ("miou", "mIoU", ".1f")]


def format_table(results: dict[str, dict]) -> str:
    """`results`: {"teacher": {...}, "<width>": {...}} as written by `split-perception eval`."""
    rows = []
    for key, r in results.items():
        row = {k: 100 * r[k] for k in ("map", "map50", "miou")}
        if key == "teacher":
            row["model"] = "teacher (uncompressed input)"
        else:
            row.update({k: r[k] for k in ("bytes_mean", "bytes_p95", "encode_ms", "decode_ms")},
                       model="split student", width=float(key))
        rows.append(row)
    return markdown_table(rows, EVAL_COLUMNS)


def log_kb_axis(ax, label: str) -> None:
    """A log x axis of KB with plain numbers (1, 2, 5, 10, ...) instead of powers of ten."""
    from matplotlib.ticker import FuncFormatter

    def plain(v, _):
        return f"{v:g}" if v > 0 and round(v / 10 ** math.floor(math.log10(v))) in (1, 2, 5) else ""

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(plain))
    ax.xaxis.set_minor_formatter(FuncFormatter(plain))
    ax.set_xlabel(label)
