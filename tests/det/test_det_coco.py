"""COCO annotations: foreground mapping, multi-class option, clear errors, skipped boxes."""
import json

import numpy as np
import pytest

from ppshitu.det.coco import DetDataError, load_coco


def _write(tmp_path, coco, name="a.json"):
    path = tmp_path / name
    path.write_text(json.dumps(coco))
    return str(path)


def _coco(annotations, categories=({"id": 3, "name": "cat"}, {"id": 7, "name": "dog"})):
    return {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
                       {"id": 2, "file_name": "b.jpg", "width": 100, "height": 80}],
            "annotations": annotations, "categories": list(categories)}


def _ann(i, image_id, cat, bbox, **extra):
    return {"id": i, "image_id": image_id, "category_id": cat, "bbox": bbox, **extra}


def test_every_category_becomes_foreground_and_boxes_become_corners(tmp_path):
    path = _write(tmp_path, _coco([_ann(1, 1, 3, [10, 20, 30, 40]), _ann(2, 1, 7, [0, 0, 5, 5])]))
    s = load_coco(path)
    assert s.label_list == ["foreground"]
    rec = {r.image_id: r for r in s.records}
    np.testing.assert_allclose(rec[1].boxes, [[10, 20, 40, 60], [0, 0, 5, 5]])
    assert rec[1].classes.tolist() == [0, 0]
    assert len(rec[2].boxes) == 0 and s.empty_images == 1
    assert rec[1].path == str(tmp_path / "a.jpg")  # no images/ dir next to the json


def test_categories_kept_in_id_order_when_not_foreground(tmp_path):
    path = _write(tmp_path, _coco([_ann(1, 1, 7, [1, 1, 5, 5]), _ann(2, 2, 3, [1, 1, 5, 5])]))
    s = load_coco(path, foreground=False)
    assert s.label_list == ["cat", "dog"] and s.category_ids == [3, 7]
    assert {r.image_id: r.classes.tolist() for r in s.records} == {1: [1], 2: [0]}


def test_images_without_boxes_are_dropped_for_training(tmp_path):
    path = _write(tmp_path, _coco([_ann(1, 1, 3, [1, 1, 5, 5])]))
    assert [r.image_id for r in load_coco(path, keep_empty=False).records] == [1]


def test_degenerate_and_outside_boxes_are_skipped_and_counted(tmp_path, caplog):
    anns = [_ann(1, 1, 3, [10, 10, 0, 5]), _ann(2, 1, 3, [200, 10, 5, 5]), _ann(3, 1, 3, [90, 70, 50, 50]),
            _ann(4, 2, 3, [1, 1, 5, 5], iscrowd=1)]
    s = load_coco(_write(tmp_path, _coco(anns)))
    assert s.skipped_boxes == 2
    rec = {r.image_id: r for r in s.records}
    np.testing.assert_allclose(rec[1].boxes, [[90, 70, 100, 80]])  # clipped to the image
    assert len(rec[2].boxes) == 0  # crowd regions are not training targets
    assert "annotations[0] (id 1)" in caplog.text and "skipped 2 malformed boxes" in caplog.text


@pytest.mark.parametrize("coco, message", [
    (_coco([_ann(1, 9, 3, [1, 1, 5, 5])]), "annotations[0] (id 1): image_id 9 is not in images"),
    (_coco([_ann(1, 1, 4, [1, 1, 5, 5])]), "category_id 4 is not in categories [3, 7]"),
    (_coco([_ann(1, 1, 3, [1, 1, 5])]), "bbox must be [x, y, width, height] numbers, got [1, 1, 5]"),
    (_coco([_ann(1, 1, 3, "1 1 5 5")]), "bbox must be"),
    (_coco([{"id": 1, "category_id": 3, "bbox": [1, 1, 5, 5]}]), "annotations[0] (id 1) has no valid 'image_id'"),
    ({"images": [], "annotations": []}, "missing or invalid 'categories'"),
    ({"images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 4}] * 2, "annotations": [],
      "categories": []}, "duplicate image id 1"),
])
def test_malformed_files_name_the_file_and_entry(tmp_path, coco, message):
    path = _write(tmp_path, coco)
    with pytest.raises(DetDataError) as e:
        load_coco(path)
    assert message in str(e.value) and path in str(e.value)


def test_missing_and_invalid_json(tmp_path):
    with pytest.raises(DetDataError, match="annotation file not found: .*nope.json"):
        load_coco(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DetDataError, match="bad.json: not valid JSON"):
        load_coco(str(bad))
