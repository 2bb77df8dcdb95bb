import os

import numpy as np
import pytest

from ppshitu.visualize import FontError, draw_results, find_font, label_colour, save_image


def _blank(h=200, w=300):
    return np.full((h, w, 3), 255, np.uint8)


def test_box_changes_pixels_at_edge_only():
    img = _blank()
    out = draw_results(img, [{"bbox": [100, 80, 200, 160], "rec_docs": "cat", "rec_scores": 0.9}])
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (img == 255).all(), "input must not be modified"
    # the box's bottom and right edges are drawn in the label's colour
    assert tuple(out[160, 150]) == label_colour("cat")
    assert tuple(out[120, 200]) == label_colour("cat")
    # well inside the box and far outside it nothing changed
    assert (out[110:150, 110:190] == 255).all()
    assert (out[180:, :] == 255).all() and (out[:, 220:] == 255).all()
    # the label is drawn (above the box): its band is not white
    assert (out[60:80, 100:140] != 255).any()


def test_unknown_is_grey_and_colours_are_stable():
    out = draw_results(_blank(), [{"bbox": [50, 50, 150, 150], "rec_docs": "unknown", "rec_scores": 0.1}])
    assert tuple(out[150, 100]) == (160, 160, 160)
    assert label_colour("dog") == label_colour("dog")
    assert label_colour("dog") != label_colour("cat")


def test_font_found_is_absolute_existing_path():
    path = find_font()
    assert path is not None and os.path.isabs(path) and os.path.isfile(path)


def test_non_ascii_label_draws(tmp_path):
    results = [{"bbox": [10, 40, 120, 150], "rec_docs": "矿泉水 Ölflasche", "rec_scores": 0.77},
               {"bbox": [-20, -5, 400, 300], "rec_docs": "unknown", "rec_scores": 0.2}]  # clipped
    out = draw_results(_blank(), results)
    assert (out != 255).any()
    path = save_image(str(tmp_path / "sub" / "drawn.png"), out)
    from ppshitu.utils.image import read_image
    assert np.array_equal(read_image(path), out)


def test_bad_font_path_errors_clearly(tmp_path):
    missing = str(tmp_path / "no_such_font.ttf")
    with pytest.raises(FontError, match="no_such_font.ttf"):
        draw_results(_blank(), [{"bbox": [1, 1, 20, 20], "rec_docs": "a", "rec_scores": 1.0}], font_path=missing)


def test_explicit_font_path_is_used():
    path = find_font()
    assert find_font(path) == path
    out = draw_results(_blank(), [{"bbox": [10, 40, 120, 150], "rec_docs": "x", "rec_scores": 0.5}], font_path=path)
    assert (out != 255).any()
