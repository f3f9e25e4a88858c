"""Regenerate the settings reference in docs/configuration.md from the settings model (`make docs`)."""

from pathlib import Path

from leverplus.config import settings_reference_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
START, END = "<!-- settings-reference:start", "<!-- settings-reference:end -->"

text = DOC.read_text()
head_end = text.index("\n", text.index(START)) + 1
DOC.write_text(text[:head_end] + settings_reference_markdown() + text[text.index(END) :])
print(f"updated {DOC}")
