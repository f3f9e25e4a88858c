"""Regenerate the README's settings reference from the settings model (`make docs`)."""

from pathlib import Path

from leverplus.config import settings_reference_markdown

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- settings-reference:start", "<!-- settings-reference:end -->"

text = README.read_text()
head_end = text.index("\n", text.index(START)) + 1
README.write_text(text[:head_end] + settings_reference_markdown() + text[text.index(END) :])
print(f"updated {README}")
