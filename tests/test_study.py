"""The data-scaling study's reading of its runs: accuracy against balanced queries, the seed spread, a plain verdict."""

from __future__ import annotations

import json

from leverplus.run_record import RunRecord, write_record
from leverplus.store import LocalStore
from leverplus.study import STUDY_PREFIX, _finished, scaling_rows, write_study


def _metrics(queries: int, policy: list[float]) -> dict:
    ea = {"sft": 80.0, "similarity": 81.0, "mmr": 83.0, "retrieval": 81.0, "best in pool": 85.0, "policy": policy[0]}
    ea |= {f"policy-seed{i}": v for i, v in enumerate(policy[1:], start=1)}
    return {"data": {"version": f"v{queries}", "queries": queries}, "ceilings": {"2": {"expected_accuracy": ea}}}


def test_the_study_reads_each_finished_runs_report_and_says_whether_accuracy_grew(tmp_path) -> None:
    store = LocalStore(tmp_path)
    runs = {"run-0001": (60, [81.0, 81.2, 80.8]), "run-0002": (210, [82.0, 82.1, 81.9]), "run-0003": (360, [84.0])}
    for i, (run_id, (queries, policy)) in enumerate(runs.items()):
        pipeline = "balanced-v3" if i == 0 else "data-growth"
        write_record(
            store,
            RunRecord(
                run_id=run_id,
                round_id=f"round-{i}",
                pipeline=pipeline,
                sft_checkpoint="",
                settings_hash="x",
                status="finished",
            ),
        )
        store.put_bytes(f"runs/{run_id}/report/metrics.json", json.dumps(_metrics(queries, policy)).encode())
    write_record(
        store, RunRecord(run_id="run-0004", round_id="r4", pipeline="data-growth", sft_checkpoint="", settings_hash="x")
    )
    assert _finished(store) == ["run-0001", "run-0002", "run-0003"]  # an unfinished run is not a data point
    rows = scaling_rows(store, ["run-0001", "run-0002"])
    assert [r["queries"] for r in rows] == [60, 210]
    assert rows[0]["shots"]["2"]["policy"] == 81.0 and rows[0]["shots"]["2"]["policy_sd"] == 0.2
    assert rows[1]["shots"]["2"]["mmr"] == 83.0 and rows[1]["shots"]["2"]["seeds"] == 3
    uri = write_study(store, rows)
    text = (tmp_path / STUDY_PREFIX / "report.md").read_text()
    assert uri.endswith("report.md") and "shot 2: grew +1.00 (81.00 → 82.00, seed sd ≤ 0.20; -1.00 vs MMR)" in text
    assert (tmp_path / STUDY_PREFIX / "scaling.png").stat().st_size > 0
    flat = write_study(store, scaling_rows(store, ["run-0001", "run-0001"]))
    assert "shot 2: did not move" in (tmp_path / STUDY_PREFIX / "report.md").read_text() and flat == uri
