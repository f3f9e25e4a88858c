"""Guards on data that crosses rounds: a reward means something only under the prompt, LVLM, threshold, metric and
group size it was scored with, so `filter` refuses to merge, and `rce`/`grpo` refuse to train on, groups scored
under other settings than the current ones. The error names the round, the question and the field."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from leverplus.config import Settings
from leverplus.errors import DataError
from leverplus.lvlm import PROMPT_HASH, lvlm_id
from leverplus.records import CandidateGroup

__all__ = ["check_groups", "group_facts"]


def group_facts(settings: Settings) -> dict[str, Any]:
    """What every scored group records about how its rewards were made, under these settings."""
    return {
        "prompt_hash": PROMPT_HASH,
        "lvlm": lvlm_id(settings.lvlm),
        "hard_threshold": settings.rl.hard_threshold,
        "metric_mode": settings.eval.metric_mode,
        "candidates_per_query": settings.rl.candidates_per_query,
    }


def check_groups(groups: Iterable[CandidateGroup], settings: Settings, action: str) -> None:
    """Raise DataError on the first group whose recorded facts differ from the current settings."""
    want = group_facts(settings)
    for group in groups:
        for field, value in want.items():
            got = getattr(group, field)
            if got != value:
                raise DataError(
                    f"cannot {action}: round {group.round_id}, question_id {group.question_id} was scored with "
                    f"{field}={got!r}, the current settings give {value!r} (score a new round under these settings, "
                    "or use the settings it was scored with)"
                )
        if len(group.candidates) != group.candidates_per_query:
            raise DataError(
                f"cannot {action}: round {group.round_id}, question_id {group.question_id} has "
                f"{len(group.candidates)} candidates, its record says {group.candidates_per_query}"
            )
