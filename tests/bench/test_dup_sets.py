"""The duplicate benchmark's confuser generator: every pair it hands out differs visibly (a change that landed
on flat content is drawn again), and a draw that never differs stops with an error naming the pair."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import dup_sets  # noqa: E402


def test_confuser_pairs_all_differ_visibly():
    pairs = dup_sets.confuser_pairs(np.random.default_rng(3), dup_sets.CONFUSER_SOURCES, np.arange(300, 600),
                                    n_per_kind=4, size=128)
    assert {k for k, *_ in pairs} == {"crop_under_half", "neighbouring_frames", "colour_variant"}
    assert all(dup_sets.visibly_different(a, b) for _, a, b in pairs)


def test_an_invisible_change_is_redrawn_then_refused():
    flat = np.full((64, 64, 3), 120, np.uint8)
    changed = flat.copy()
    changed[8:40, 8:40] = 200
    draws = iter([(flat, flat.copy()), (flat, changed)])
    a, b = dup_sets.visible_pair(lambda: next(draws), "colour_variant", 0)
    assert b is changed
    with pytest.raises(RuntimeError, match=r"confuser pair 7 \(neighbouring_frames\): 3 draws"):
        dup_sets.visible_pair(lambda: (flat, flat.copy()), "neighbouring_frames", 7, tries=3)
