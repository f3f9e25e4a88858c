"""Candidate-pool samplers."""

from __future__ import annotations

import numpy as np
import pytest

from leverplus.errors import ConfigError
from leverplus.features import FeatureTable
from leverplus.pools import build_pools, check_shots


def _table(n: int, seed: int = 0, split: str = "train") -> FeatureTable:
    rng = np.random.default_rng(seed)
    unit = lambda m: (m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return FeatureTable(
        "simple", split, np.arange(100, 100 + n, dtype=np.int64), unit(rng.random((n, 5))), unit(rng.random((n, 7)))
    )


@pytest.mark.parametrize("sampler", ["random", "similarity", "stratified", "retrieved"])
def test_pools_have_the_size_never_hold_the_query_and_are_deterministic(sampler: str) -> None:
    table = _table(200)
    queries = [100, 150, 299]
    pools = build_pools(queries, table, table, sampler, 30, seed=3, image_of={})
    for q in queries:
        assert len(pools[q]) == len(set(pools[q])) == 30 and q not in pools[q]
    assert pools == build_pools(queries, table, table, sampler, 30, seed=3, image_of={})


def test_similarity_pool_is_the_top_k_and_stratified_spans_deciles() -> None:
    table = _table(200)
    sims = table.joint() @ table.joint([120])[0]
    ranked = [int(table.question_ids[i]) for i in np.argsort(-sims) if table.question_ids[i] != 120]
    assert sorted(build_pools([120], table, table, "similarity", 20, 0, image_of={})[120]) == sorted(ranked[:20])
    stratified = build_pools([120], table, table, "stratified", 20, 0, image_of={})[120]
    deciles = [ranked.index(i) * 10 // len(ranked) for i in stratified]
    assert sorted(set(deciles)) == list(range(10)) and all(deciles.count(d) == 2 for d in range(10))


def test_retrieved_pool_is_the_top_with_a_diversity_share_from_the_rest() -> None:
    table = _table(200)
    sims = table.joint() @ table.joint([120])[0]
    ranked = [int(table.question_ids[i]) for i in np.argsort(-sims) if table.question_ids[i] != 120]
    plain = build_pools([120], table, table, "retrieved", 20, 0, image_of={})[120]
    assert sorted(plain) == sorted(ranked[:20])  # diversity 0: the top-20, as a practitioner retrieves
    mixed = build_pools([120], table, table, "retrieved", 20, 0, image_of={}, diversity=0.25)[120]
    ranks = sorted(ranked.index(i) for i in mixed)
    assert ranks[:15] == list(range(15))  # 15 from the top ...
    assert len(set(mixed)) == 20 and min(ranks[15:]) >= 15  # ... and 5 from the rest, spread over its deciles
    assert max(ranks[15:]) > len(ranked) // 2


@pytest.mark.parametrize("sampler", ["random", "similarity", "stratified", "retrieved"])
def test_no_pool_holds_a_question_on_the_querys_image(sampler: str) -> None:
    table = _table(200)
    image_of = {int(q): int(q) // 3 for q in table.question_ids}  # three questions per image, as on VQAv2
    queries = list(range(100, 300, 7))
    pools = build_pools(queries, table, table, sampler, 30, seed=3, image_of=image_of)
    for q in queries:
        assert len(pools[q]) == 30 and not [i for i in pools[q] if image_of[i] == image_of[q]]
    # A split whose questions are all on one image leaves no ICD: an error naming the question, not a short pool.
    with pytest.raises(ConfigError, match="question_id 100: only 0 ICDs are not on its image"):
        build_pools([100], table, table, "random", 5, 0, image_of=dict.fromkeys(image_of, 0))


def test_eval_pools_come_from_the_train_split() -> None:
    train, val = _table(100), _table(10, seed=1, split="val")
    val.question_ids = np.arange(900, 910, dtype=np.int64)
    val.__post_init__()
    pools = build_pools([900, 905], val, train, "random", 8, 0, image_of={})
    assert all(set(p) <= set(train.question_ids.tolist()) for p in pools.values())


def test_bad_requests_are_errors() -> None:
    table = _table(20)
    with pytest.raises(ConfigError, match=r"pool\.size 25 exceeds the 19 ICDs"):
        build_pools([100], table, table, "random", 25, 0, image_of={})
    with pytest.raises(ConfigError, match="unknown pool sampler 'knn'"):
        build_pools([100], table, table, "knn", 5, 0, image_of={})
    with pytest.raises(ConfigError, match="question_id 7: 3 shots requested but its pool has only 2 distinct"):
        check_shots([1, 2, 2], 3, 7)
    check_shots([1, 2, 3], 3, 7)


def test_an_empty_pool_is_an_error_wherever_it_comes_from(tmp_path, capsys) -> None:
    from leverplus.cli import main

    with pytest.raises(ConfigError, match="question_id 7: 1 shots requested but its pool has only 0 distinct items"):
        check_shots([], 1, 7)  # e.g. a hand-edited plan
    assert main(["config", "show", "--set", "pool.size=0"]) == 2  # and the setting cannot ask for one
    assert "pool.size" in capsys.readouterr().err.strip().splitlines()[-1]
