"""Text search end to end on tiny imported text-image models (both tokenizer kinds, built here): import, index a
folder of generated images with the image encoder (tools/index_folder.py, the one embedding path), search it by
text with tools/search.py (English and Chinese), and the refusals: another model's gallery, an empty query, a
query past the context length (cut, and said)."""
import json
import os

import pytest
from PIL import Image

from textsearch_helpers import cli, colour_images, import_args


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """{kind: (model dir, index dir)} and the images' folder: one gallery per tokenizer kind."""
    import tools.import_model as import_tool
    import tools.index_folder as index_tool

    tmp = tmp_path_factory.mktemp("textsearch")
    images = colour_images(str(tmp / "photos"))
    out = {}
    for kind, mask in (("bpe", False), ("wordpiece", True)):
        work = tmp / kind
        work.mkdir()
        import_tool.main(import_args(str(work), kind, with_mask=mask, length=12))
        index = work / "index"
        index_tool.main(cli(str(work / "model"), str(index), str(work / "out")) + ["--dir", str(tmp / "photos")])
        out[kind] = (str(work / "model"), str(index), str(work / "out"))
    return out, images, tmp


@pytest.mark.parametrize("kind,query,colour", [("bpe", "a red car", "red"), ("bpe", "green", "green"),
                                               ("wordpiece", "红色的汽车", "red"), ("wordpiece", "蓝色的天空", "blue"),
                                               ("wordpiece", "a green frog", "green")])
def test_text_query_finds_its_colour_and_writes_a_sheet(library, kind, query, colour, capsys):
    import tools.search as tool

    models, images, _ = library
    model, index, out = models[kind]
    hits = tool.main(cli(model, index, out) + ["--text", query, "--k", "3"])
    assert [h["label"] for h in hits] == [colour] * 3, hits          # all three images of that colour, first
    assert all(images[h["file"]] == colour for h in hits)
    printed = capsys.readouterr().out
    sheet = printed.strip().splitlines()[-1].split("contact sheet: ")[1]
    assert os.path.isfile(sheet) and Image.open(sheet).size[0] > 3 * 160   # the query card + 3 results


def test_text_query_json_and_truncation_is_said(library, capsys):
    import tools.search as tool

    models, _, _ = library
    model, index, out = models["bpe"]
    long_query = "red " + " ".join(["a photo of a car"] * 20)   # far past 12 tokens; "red" is in what is kept
    tool.main(cli(model, index, out) + ["--text", long_query, "--k", "2", "--json", "--no-sheet"])
    data = json.loads(capsys.readouterr().out)
    assert data["truncated"] is True and "context length 12" in data["note"]
    assert [r["label"] for r in data["results"]] == ["red", "red"]
    tool.main(cli(model, index, out) + ["--text", long_query, "--k", "1", "--no-sheet"])
    assert capsys.readouterr().out.startswith("note: the query has ")


def test_empty_query_and_image_only_model_are_refused(library, tmp_path):
    import tools.import_model as import_tool
    import tools.index_folder as index_tool
    import tools.search as tool
    from ppshitu.errors import PPShiTuError
    from ppshitu.gallery import GalleryError

    models, _, tmp = library
    model, index, out = models["bpe"]
    with pytest.raises(PPShiTuError, match="empty"):
        tool.main(cli(model, index, out) + ["--text", "   "])
    # an image-only import of the same image encoder: its gallery cannot answer text queries
    argv = import_args(str(tmp_path), "bpe", out="image_only")
    img_only = argv[:2] + argv[argv.index("--input-size"):]
    import_tool.main(img_only)
    plain_index = tmp_path / "plain_index"
    index_tool.main(cli(str(tmp_path / "image_only"), str(plain_index), str(tmp_path)) + ["--dir", str(tmp / "photos")])
    with pytest.raises(GalleryError, match="no text encoder"):
        tool.main(cli(str(tmp_path / "image_only"), str(plain_index), str(tmp_path)) + ["--text", "red"])
    # the text-image model on the image-only gallery: indexed by a model without a text encoder
    with pytest.raises(GalleryError, match="which has no text encoder"):
        tool.main(cli(model, str(plain_index), str(tmp_path)) + ["--text", "red"])
    # another text-image model's gallery (the wordpiece one has another text encoder)
    with pytest.raises(GalleryError, match="not comparable"):
        tool.main(cli(model, models["wordpiece"][1], str(tmp_path)) + ["--text", "red"])


def test_text_search_on_a_milvus_gallery(library, tmp_path):
    """The text path uses only the store interface: the same answers from a Milvus Lite gallery."""
    import tools.index_folder as index_tool
    import tools.search as tool

    models, _, tmp = library
    model = models["wordpiece"][0]
    milvus = {"IndexProcess.backend": "milvus", "IndexProcess.uri": str(tmp_path / "lib.db"),
              "IndexProcess.collection": "photos"}
    index_tool.main(cli(model, str(tmp_path / "unused"), str(tmp_path), **milvus) + ["--dir", str(tmp / "photos")])
    hits = tool.main(cli(model, str(tmp_path / "unused"), str(tmp_path), **milvus) + ["--text", "蓝色", "--k", "3",
                                                                                      "--no-sheet"])
    assert [h["label"] for h in hits] == ["blue"] * 3
