"""`bench report`: the benchmark tables of docs/results.md and the README's results lines, generated
from the benchmark output folders.

Each folder's `table.md` is taken as written, headed by the command and machine recorded in its
from . import headlines, sizing
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..errors import ConfigError
from . import headlines, sizing

BEGIN, END = "<!-- bench-results:begin -->", "<!-- bench-results:end -->"
SECTIONS = [("rate_accuracy", "Bytes vs accuracy (`bench rate-accuracy`)"),
            ("rate_accuracy_hard", "Bytes vs accuracy on the hard scenes (`bench rate-accuracy`, `--style hard` data)"),
            ("rate_accuracy_real", "Agreement with a real teacher on held-out clips (`bench rate-accuracy --footage`)"),
            ("rate_accuracy_video", "Against video codecs on held-out clips (`bench rate-accuracy --video`)"),
            ("temporal", "Temporal coding against acknowledged frames (`bench temporal`)"),
            ("loss", "Lost packets: ours against H.264 (`bench loss`)"),
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
            ("fuzz", "Fuzzing the offboard decoder (`fuzz`)"),
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


def slug(title: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def _relative(target: Path, page: Path) -> str:
    """`target` as a link from `page` (relative, so it works on GitHub and in a clone)."""
    return Path(os.path.relpath(target, page.parent)).as_posix()


def readme_block(results: Path, readme: Path, doc: Path) -> str:
    """The README's results lines, each linking to its section of the page `doc`."""
    link = _relative(doc, readme)
    return headlines.block(results, {name: f"{link}#{slug(title)}" for name, title in SECTIONS})


def marked(page: Path, begin: str = BEGIN, end: str = END) -> str:
    """The text between the markers of `page`."""
    doc = page.read_text()
    if begin not in doc or end not in doc or doc.index(begin) > doc.index(end):
        raise ConfigError(f"{page} has no '{begin}' ... '{end}' markers")
    return doc.split(begin, 1)[1].split(end, 1)[0].strip("\n")


def update_page(page: Path, text: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the text between the markers of `page` with `text`."""
    marked(page, begin, end)
    head, rest = page.read_text().split(begin, 1)
    _, tail = rest.split(end, 1)
    page.write_text(f"{head}{begin}\n{text}\n{end}{tail}")


def run(args) -> int:
    results, page, readme = Path(args.results).resolve(), Path(args.doc).resolve(), Path(args.readme).resolve()
    text = section(results, _relative(results, page))
    lines = readme_block(results, readme, page)
    if args.print:
        print(f"{text}\n\n{lines}")
        return 0
    marked(page), marked(readme, headlines.BEGIN, headlines.END)  # both pages checked before either is written
    update_page(page, text)
    update_page(readme, lines, headlines.BEGIN, headlines.END)
    print(f"updated the benchmark tables of {args.doc} and the results lines of {args.readme} from {args.results}")
    return 0
