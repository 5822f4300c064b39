"""The README and docs/ agree with the code: every node parameter documented, every link resolves,
and the repository stands on its own (no pointers to files a user does not have)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .test_ros_package import NODES, declared_parameters

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
