"""The README and docs/ agree with the code: every node parameter documented, every link resolves,
and the repository stands on its own (no pointers to files a user does not have)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from split_perception.bench import headlines
from split_perception.bench.report import marked, readme_block, slug

from .test_ros_package import NODES, declared_parameters
from .test_user_commands import DOC_COMMANDS

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


@pytest.mark.parametrize("node", sorted(NODES))
def test_readme_lists_every_parameter_of_each_node(node):
    row = next((line for line in README.splitlines() if line.startswith(f"| `{node}`")), None)
    assert row, f"no row for {node} in the README's node table"
    documented = set(re.findall(r"`(\w+)`", row))
    assert declared_parameters(NODES[node]) <= documented, declared_parameters(NODES[node]) - documented


def test_links_in_readme_and_docs_resolve():
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


def test_tracked_files_do_not_point_outside_the_repository():
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    bad = re.compile(r"\.\./shared|FACTS\.md|ros-on-pip\.md|\bissue #\d")
    hits = [f for f in files if (REPO / f).is_file() and f.endswith((".py", ".md", ".txt", ".yaml", ".xml", ".toml",
                                                                      "Makefile", "CMakeLists.txt", ".sh"))
            and f != "test/test_docs.py" and bad.search((REPO / f).read_text(errors="replace"))]
    assert not hits, hits


def test_readme_results_are_those_of_the_result_files():
    """The README's results lines are what `bench report` makes of results/bench now: a figure typed
    by hand, or left behind by a new run, fails here (rerun `split-perception bench report`)."""
    expected = readme_block(REPO / "results" / "bench", REPO / "README.md", REPO / "docs" / "results.md")
    assert marked(REPO / "README.md", headlines.BEGIN, headlines.END) == expected, \
        "README.md's results lines differ from results/bench: run `split-perception bench report`"


def test_links_to_sections_of_the_results_page_resolve():
    results = REPO / "docs" / "results.md"
    anchors = {slug(h) for h in re.findall(r"^#+ (.+)$", results.read_text(), re.M)}
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target, anchor in re.findall(r"\]\(([^)#\s]*results\.md)#([^)\s]+)\)", page.read_text()):
            if (page.parent / target).resolve() == results:
                assert anchor in anchors, f"{page.name}: no section #{anchor} in docs/results.md"


def documented_commands() -> set[str]:
    """Every `split-perception` sub-command that README.md or docs/cli.md shows (`bench X` counts as one)."""
    text = README + (REPO / "docs" / "cli.md").read_text()
    found = set()
    for m in re.finditer(r"(?:split-perception|split_perception\.cli)\s+(bench\s+)?([a-z][a-z-]*)", text):
        found.add(f"bench {m.group(2)}" if m.group(1) else m.group(2))
    return found - {"bench"}


def test_every_documented_command_runs_in_a_test():
    missing = documented_commands() - set(DOC_COMMANDS)
    assert not missing, f"documented without a test that runs it (add one to test_user_commands.DOC_COMMANDS): {missing}"
    for command, where in DOC_COMMANDS.items():
        file, name = where.split("::")
        assert re.search(rf"^def {name}\(", (REPO / "test" / file).read_text(), re.M), f"{command}: no test {where}"
