"""Inference config values that used to be accepted and then gave silently wrong results or
errors that named no key: non-finite numbers, return_k < 1, and the embedding size (now the
model's unless set)."""
from pathlib import Path

import pytest

from ppshitu.config import Field, load_config, validate
from ppshitu.errors import ConfigError
from ppshitu.schemas import INFER_SCHEMA

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "inference"


@pytest.mark.parametrize("override,key", [
    ("IndexProcess.score_thres=.nan", "IndexProcess.score_thres"),
    ("IndexProcess.score_thres=.inf", "IndexProcess.score_thres"),
    ("Global.threshold=-.inf", "Global.threshold"),
    ("IndexProcess.return_k=0", "IndexProcess.return_k"),
    ("IndexProcess.batch_size=0", "IndexProcess.batch_size"),
    ("Global.max_image_pixels=0", "Global.max_image_pixels"),
    ("Global.min_image_side=0", "Global.min_image_side"),
    ("IndexProcess.min_crop_std=-1", "IndexProcess.min_crop_std"),
    ("IndexProcess.embedding_size=0", "IndexProcess.embedding_size"),
])
def test_bad_numbers_are_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(CONFIGS / "inference_general.yaml", [override], INFER_SCHEMA)
    assert key in str(e.value) and "-o" in str(e.value)


def test_a_non_finite_number_is_refused_in_any_numeric_field():
    schema = {"x": Field(float, 1.0), "n": Field((int, float), 2)}
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="x must be a finite number"):
            validate({"x": bad}, schema, "cfg.yaml")
    assert validate({"x": 3, "n": 4}, schema) == {"x": 3.0, "n": 4}


def test_the_limit_keys_and_their_defaults():
    cfg = load_config(CONFIGS / "inference_general.yaml", [], INFER_SCHEMA)
    assert cfg.Global.max_image_pixels is None        # $PPSHITU_MAX_IMAGE_PIXELS, else 40 MP
    assert cfg.Global.min_image_side == 8
    assert cfg.IndexProcess.min_crop_std == 1.0
    for name in ("inference_general.yaml", "build_gallery.yaml"):  # shipped configs take the model's size
        assert load_config(CONFIGS / name, [], INFER_SCHEMA).IndexProcess.embedding_size is None
    cfg = load_config(CONFIGS / "build_gallery.yaml", ["Global.max_image_pixels=1000000"], INFER_SCHEMA)
    assert cfg.Global.max_image_pixels == 1000000
