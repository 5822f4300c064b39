"""`bench report`: the benchmark tables of docs/results.md, generated from the benchmark output folders.

Each folder's `table.md` is taken as written, headed by the command and machine recorded in its
JSON, and linked to its plot; sections worked out from other results (how many servers, from `bench
batch`) are computed here. The section replaces the text between the two markers in the page.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import ConfigError
from . import sizing

BEGIN, END = "<!-- bench-results:begin -->", "<!-- bench-results:end -->"
SECTIONS = [("rate_accuracy", "Bytes vs accuracy (`bench rate-accuracy`)"),
            ("rate_accuracy_hard", "Bytes vs accuracy on the hard scenes (`bench rate-accuracy`, `--style hard` data)"),
            ("rate_accuracy_real", "Agreement with a real teacher on held-out clips (`bench rate-accuracy --footage`)"),
            ("rate_accuracy_video", "Against video codecs on held-out clips (`bench rate-accuracy --video`)"),
            ("analyze_split", "Where to split (`analyze-split`)"),
            ("latency", "Latency by width and the end-to-end model (`bench latency`)"),
            ("onboard", "Onboard runtime: ONNX Runtime vs torch (`bench onboard`)"),
            ("switch", "Width switch vs model reload (`bench switch`)"),
            ("transport", "Throughput through DDS (`bench transport`)"),
            ("encoder_node", "Camera frames into the onboard encoder node (`bench encoder-node`)"),
            ("batch", "Offboard decoding in batches (`bench batch`)"),
            ("fleet", "One server for a fleet (`bench fleet`)"),
            ("failover", "Two servers, one killed (`bench failover`)"),
            ("sizing", "How many servers (from `bench batch`)"),
            ("soak", "Soak: minutes through DDS (`bench soak`)"),
            ("restart", "Node killed and relaunched (`bench restart`)"),
            ("link", "Over a real rate-limited link (`bench link`)")]


WORKED_OUT = {"sizing": sizing.section}  # sections computed from other benchmarks' results


def _meta(folder: Path) -> dict:
    for js in sorted(folder.glob("*.json")):
        data = json.loads(js.read_text())
        if isinstance(data, dict) and "command" in data and "machine" in data:
            return data
    return {}


def section(results: Path, link_base: str) -> str:
    """Markdown for every benchmark folder under `results` that has a table.md."""
    parts = []
    for name, title in SECTIONS:
        if name in WORKED_OUT:
            text = WORKED_OUT[name](results)
            parts += [f"### {title}\n", text] if text else []
            continue
        folder = results / name
        if not (folder / "table.md").is_file():
            continue
        meta = _meta(folder)
        m = meta.get("machine", {})
        parts.append(f"### {title}\n")
        if meta:
            parts.append(f"`{meta['command']}` ({m.get('date')}, {m.get('cpus')} cores {m.get('machine', '')}, "
                         f"torch {m.get('torch')}, {m.get('threads')} threads)\n")
        for png in sorted(folder.glob("*.png")):
            parts.append(f"![{name}]({link_base}/{name}/{png.name})\n")
        parts.append((folder / "table.md").read_text().strip() + "\n")
    if not parts:
        raise ConfigError(f"no benchmark results under {results} (run `split-perception bench ...` first)")
    return "\n".join(parts)


def update_page(page: Path, text: str) -> None:
    """Replace the text between the markers of `page` with `text`."""
    doc = page.read_text()
    if BEGIN not in doc or END not in doc or doc.index(BEGIN) > doc.index(END):
        raise ConfigError(f"{page} has no '{BEGIN}' ... '{END}' markers")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    page.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def run(args) -> int:
    results, page = Path(args.results).resolve(), Path(args.doc).resolve()
    text = section(results, Path(os.path.relpath(results, page.parent)).as_posix())  # links work on GitHub
    if args.print:
        print(text)
    else:
        update_page(page, text)
        print(f"updated the benchmark tables of {args.doc} from {args.results}")
    return 0
