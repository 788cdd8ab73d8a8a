"""Fast lane: every relative link in the README, docs/ and benchmarks/README.md resolves: the
file exists and, for ``#anchor`` links, the target has a heading GitHub gives that anchor.
Internals moved out of the README into docs/; a link left pointing at a section that moved
fails here rather than on a reader."""

from __future__ import annotations

import glob
import os
import re
from typing import Iterator, List, Set, Tuple

import pytest

from .conftest import ROOT

PAGES = sorted([os.path.join(ROOT, "README.md"), os.path.join(ROOT, "benchmarks", "README.md"),
                *glob.glob(os.path.join(ROOT, "docs", "*.md"))])
FENCE = re.compile(r"^```.*?^```[ \t]*$", re.M | re.S)
CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def prose(text: str) -> str:
    """``text`` without fenced blocks or inline code (neither holds links)."""
    return CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation but ``-`` and ``_`` dropped,
    spaces to hyphens (markup characters go with the punctuation)."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: str) -> Set[str]:
    with open(path, encoding="utf-8") as f:
        text = FENCE.sub("", f.read())
    return {slug(h) for h in HEADING.findall(text)}


def links() -> Iterator[Tuple[str, str]]:
    for page in PAGES:
        with open(page, encoding="utf-8") as f:
            text = prose(f.read())
        for target in LINK.findall(text):
            if not re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: are not ours
                yield page, target


def test_the_pages_exist() -> None:
    names = {os.path.relpath(p, ROOT) for p in PAGES}
    assert {"README.md", "benchmarks/README.md", "docs/protocols.md", "docs/deploy.md",
            "docs/configuration.md", "docs/operations.md", "docs/processors.md", "docs/litert.md",
            "docs/architecture.md"} <= names


@pytest.mark.parametrize("page,target", list(links()),
                         ids=[f"{os.path.relpath(p, ROOT)}->{t}" for p, t in links()])
def test_link_resolves(page: str, target: str) -> None:
    path, _, anchor = target.partition("#")
    resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
    assert os.path.exists(resolved), f"{os.path.relpath(page, ROOT)}: {target} names no file"
    assert resolved.startswith(ROOT + os.sep), f"{target} leaves the repository"
    if anchor:
        assert resolved.endswith(".md"), f"{target}: an anchor into a file that is not markdown"
        assert anchor in anchors(resolved), (
            f"{os.path.relpath(page, ROOT)}: {target}: no such heading in "
            f"{os.path.relpath(resolved, ROOT)} (has {sorted(anchors(resolved))})")


def test_the_readme_links_every_doc() -> None:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        linked = {t.partition("#")[0] for t in LINK.findall(prose(f.read()))}
    docs: List[str] = sorted(os.path.relpath(p, ROOT) for p in PAGES if p.endswith(".md"))
    assert set(docs) - {"README.md"} <= linked


def test_the_benchmark_plots_are_shown() -> None:
    """The plots are embedded as images, not only linked."""
    with open(os.path.join(ROOT, "benchmarks", "README.md"), encoding="utf-8") as f:
        text = f.read()
    for png in glob.glob(os.path.join(ROOT, "benchmarks", "results", "*.png")):
        assert re.search(r"!\[[^\]]+\]\(results/" + re.escape(os.path.basename(png)) + r"\)", text), png


def test_the_slugs_are_githubs() -> None:
    assert slug("gRPC: TF Serving's PredictionService and V2's GRPCInferenceService") == \
        "grpc-tf-servings-predictionservice-and-v2s-grpcinferenceservice"
    assert slug("Limits and errors") == "limits-and-errors"
    assert slug("LiteRT: the same model without TensorFlow (`litert_cpu`)") == \
        "litert-the-same-model-without-tensorflow-litert_cpu"
