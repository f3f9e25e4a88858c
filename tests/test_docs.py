"""Documentation that is generated from code stays in sync with it."""

from __future__ import annotations

import re
from pathlib import Path

from leverplus.config import settings_reference_markdown

README = Path(__file__).resolve().parents[1] / "README.md"
CONFIGURATION = README.parent / "docs" / "configuration.md"


def test_settings_reference_is_current() -> None:  # regenerate with `make docs`
    text = CONFIGURATION.read_text()
    start = text.index("<!-- settings-reference:start")
    body = text[text.index("\n", start) + 1 : text.index("<!-- settings-reference:end -->")]
    assert body == settings_reference_markdown(), "run `make docs`"


ROOT = README.parent
DOCS = [README, ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"<!-- figures:([\w.-]+) \((benchmarks/\w+\.py)[^)]*\) -->\n(.*?)<!-- /figures:\1 -->", re.S)
GENERATED = re.compile(
    r"<!-- (figures:[\w.-]+ \(|settings-reference:start).*?<!-- (/figures:[\w.-]+|settings-reference:end) -->", re.S
)
FIGURE = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")  # 87.46, 0.5 — not a version such as 3.6.5


def _published_names(script: Path) -> list[re.Pattern[str]]:
    """Block names a benchmark script can publish: its string literals shaped like one (an f-string's fields read
    as wildcards)."""
    literals = re.findall(r"""f?["']([a-z][\w{}.-]*)["']""", script.read_text())
    return [re.compile(re.sub(r"\\\{[^}]*\\\}", ".+", re.escape(n))) for n in literals]


def test_every_table_of_figures_is_written_by_the_script_that_measures_it() -> None:
    blocks = 0
    for doc in DOCS:
        text = doc.read_text()
        for name, script, body in BLOCK.findall(text):
            blocks += 1
            path = ROOT / script
            assert path.exists(), f"{doc.name}: block {name} names {script}, which does not exist"
            patterns = _published_names(path)
            assert any(p.fullmatch(name) for p in patterns), f"{doc.name}: {script} never publishes block {name}"
            assert body.strip(), f"{doc.name}: block {name} is empty: run `python {script} --write`"
        outside = GENERATED.sub("", text)
        for line in outside.splitlines():
            if line.startswith("|") and FIGURE.search(line):
                raise AssertionError(f"{doc.name}: a table of figures outside a figures block: {line[:80]}")
    assert blocks >= 10
