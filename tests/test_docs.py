"""Documentation that is generated from code stays in sync with it."""

from __future__ import annotations

from pathlib import Path

from leverplus.config import settings_reference_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_settings_reference_is_current() -> None:  # regenerate with `make docs`
    text = README.read_text()
    start = text.index("<!-- settings-reference:start")
    body = text[text.index("\n", start) + 1 : text.index("<!-- settings-reference:end -->")]
    assert body == settings_reference_markdown(), "run `make docs`"
