"""Encoders (`simple`, and `clip` on a tiny real CLIPModel) and the stored feature tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from leverplus.config import FeatureSettings
from leverplus.data import load_split
from leverplus.errors import ConfigError, IntegrityError
from leverplus.features import FeatureTable, compute_features, feature_key
from leverplus.features.simple import encode_image, encode_question
from leverplus.features.table import l2_normalise
from leverplus.features.tiny import build_clip
from leverplus.store import LocalStore, open_store


def _scene(color: tuple[int, int, int], boxes: int) -> Image.Image:
    from PIL import ImageDraw

    image = Image.new("RGB", (224, 224), (230, 230, 230))
    draw = ImageDraw.Draw(image)
    for i in range(boxes):
        draw.rectangle((10 + 56 * i, 10, 40 + 56 * i, 40), fill=color)
    return image


def test_simple_encoder_sees_colour_count_and_question_words() -> None:
    red2, red3, blue2 = _scene((214, 39, 40), 2), _scene((214, 39, 40), 3), _scene((31, 90, 220), 2)
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    a, b, c = unit(encode_image(red2)), unit(encode_image(red3)), unit(encode_image(blue2))
    assert a @ b > 0.9 > a @ c  # same colour, different count: close; different colour: far
    assert not np.allclose(encode_image(red2), encode_image(red3))  # the count is visible
    assert np.array_equal(encode_image(red2), encode_image(_scene((214, 39, 40), 2)))  # deterministic
    q1, q2, q3 = (
        unit(encode_question(t))
        for t in ("How many circles are there?", "How many squares are there?", "What color is the triangle?")
    )
    assert q1 @ q2 > q1 @ q3


def test_simple_features_of_a_split_roundtrip_through_the_store(world_root: Path, tmp_path: Path) -> None:
    data = load_split(open_store(str(world_root / "datasets/synthetic")), "val")
    table = compute_features(data, FeatureSettings(encoder="simple"))
    assert table.question_ids.tolist() == sorted(r.question_id for r in data)
    assert np.allclose(np.linalg.norm(table.image, axis=1), 1) and np.allclose(
        np.linalg.norm(table.question, axis=1), 1
    )
    records = list(data)
    same_image = [i for i, r in enumerate(records) if r.image_id == records[0].image_id]
    assert len(same_image) > 1 and all(np.array_equal(table.image[i], table.image[0]) for i in same_image)
    # Images are encoded on threads: each row is still its own question's image, exactly as encoded alone.
    row = {int(q): i for i, q in enumerate(table.question_ids)}
    for r in records[::7]:
        alone = l2_normalise(encode_image(data.load_image(r))[None])[0]
        assert np.array_equal(table.image[row[r.question_id]], alone)
    store = LocalStore(tmp_path)
    table.save(store)
    loaded = FeatureTable.load(store, "simple", "val")
    assert np.array_equal(loaded.image, table.image) and np.array_equal(loaded.question_ids, table.question_ids)
    assert loaded.joint([records[2].question_id]).dtype == np.float32


def test_clip_encoder_on_a_tiny_real_model(world_root: Path, tmp_path: Path) -> None:
    model = build_clip(tmp_path / "tiny-clip")
    data = load_split(open_store(str(world_root / "datasets/synthetic")), "val")
    table = compute_features(data, FeatureSettings(encoder="clip", model=str(model), batch_size=16))
    assert table.encoder == "clip" and table.image.shape == (len(data), 16) == table.question.shape
    assert np.allclose(np.linalg.norm(table.joint(), axis=1), 1, atol=1e-5)
    records = list(data)
    differs = [i for i, r in enumerate(records) if r.question != records[0].question]
    assert not np.allclose(table.question[0], table.question[differs[0]])  # text actually encoded
    with pytest.raises(ConfigError, match=r"features\.model .*cannot load a CLIP model"):
        compute_features(data, FeatureSettings(encoder="clip", model=str(tmp_path / "missing")))


def test_corrupt_feature_file_is_an_integrity_error(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes(feature_key("simple", "train"), b"not safetensors")
    with pytest.raises(IntegrityError, match="not a valid safetensors feature file"):
        FeatureTable.load(store, "simple", "train")


def test_one_changed_float_in_a_feature_table_is_found_and_recomputed(world) -> None:
    """Issue 22: "anything else a reader loads: same rule". Safetensors has no checksum: the table carries one."""
    from leverplus.stages.features import run_features
    from leverplus.stages.verify import run_verify

    path = world.root / feature_key("simple", "train")
    good = path.read_bytes()
    table = FeatureTable.load(world("read").store, "simple", "train")
    offset = good.index(table.image[3].tobytes())  # a float of one question's image embedding
    path.write_bytes(good[:offset] + bytes([good[offset] ^ 0x01]) + good[offset + 1 :])
    with pytest.raises(IntegrityError, match=r"train\.safetensors: sha256 differs from its contents"):
        FeatureTable.load(world("read").store, "simple", "train")
    assert any("features/simple/train.safetensors" in p for p in run_verify(world("verify"))[1])
    run_features(world("features"))  # derived data: computed again, the same tensors
    again = FeatureTable.load(world("read").store, "simple", "train")
    assert all(np.array_equal(getattr(again, f), getattr(table, f)) for f in ("question_ids", "image", "question"))
