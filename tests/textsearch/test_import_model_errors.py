"""tools/import_model.py refuses what does not fit, naming the file and the value: an encoder of the wrong kind,
a tokenizer of another vocabulary, towers of different D, a context length the file does not have, a file that
is not ONNX, outputs it cannot choose between; and it never writes over a folder that is not a model."""
import os

import numpy as np
import pytest

from textsearch_helpers import image_encoder, import_args, text_encoder

from ppshitu.errors import ConfigError


def _run(argv):
    import tools.import_model as tool

    return tool.main(argv)


def _set(argv, flag, value):
    argv = list(argv)
    argv[argv.index(flag) + 1] = str(value)
    return argv


@pytest.fixture
def bpe(tmp_path):
    return import_args(str(tmp_path), "bpe", length=16)


def test_encoders_of_the_wrong_kind_are_named(bpe):
    img, txt = bpe[bpe.index("--image-encoder") + 1], bpe[bpe.index("--text-encoder") + 1]
    with pytest.raises(ConfigError, match=rf"{txt}: input input_ids int64.* is not an image; an image encoder takes float32.*--text-encoder"):
        _run(_set(bpe, "--image-encoder", txt))
    with pytest.raises(ConfigError, match=rf"{img}: a text encoder takes token ids.*float32.*--image-encoder"):
        _run(_set(bpe, "--text-encoder", img))


def test_a_tokenizer_of_another_vocabulary_is_refused(bpe, tmp_path):
    from textsearch_helpers import wordpiece_vocab

    vocab = str(tmp_path / "vocab.txt")
    wordpiece_vocab(vocab)   # 94 tokens against a table of 300 rows
    with pytest.raises(ConfigError, match=rf"{vocab}: the tokenizer has \d+ tokens but the text encoder .* embeds 300"):
        _run(_set(bpe, "--tokenizer", vocab))
    bad = tmp_path / "broken.json"
    bad.write_text("{not a tokenizer")
    with pytest.raises(ConfigError, match=rf"{bad}: not a tokenizer.json"):
        _run(_set(bpe, "--tokenizer", bad))


def test_towers_of_different_size_and_context_length(bpe, tmp_path):
    txt6 = text_encoder(str(tmp_path / "txt6.onnx"), np.ones((300, 6), np.float32), length=16)
    with pytest.raises(ConfigError, match=r"txt6.onnx: the text encoder makes 6-d vectors but the image encoder "
                                          r".*img.onnx makes 8-d"):
        _run(_set(bpe, "--text-encoder", txt6))
    with pytest.raises(ConfigError, match=r"txt.onnx: input input_ids is fixed at context length 16 but "
                                          r"--context-length is 12"):
        _run(bpe + ["--context-length", "12"])


def test_not_onnx_fixed_size_and_several_outputs(bpe, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 not a model")
    with pytest.raises(ConfigError, match=rf"{junk}: not an ONNX model"):
        _run(_set(bpe, "--image-encoder", junk))
    with pytest.raises(ConfigError, match=r"img.onnx: input pixels is fixed at 32x32 but --input-size is 48x48"):
        _run(_set(bpe, "--input-size", 48))
    two = _two_outputs(str(tmp_path / "two.onnx"))
    with pytest.raises(ConfigError, match=r"two.onnx: 2 outputs .*name the embedding with --image-output"):
        _run(_set(bpe, "--image-encoder", two))
    spec = _run(_set(bpe, "--image-encoder", two) + ["--image-output", "embedding"])
    assert spec["output_name"] == "embedding" and spec["embedding_size"] == 8
    from ppshitu.infer.rec import RecPredictor   # runs the output it was told, not the file's first

    red = np.full((40, 40, 3), (230, 30, 30), np.uint8)
    assert RecPredictor(bpe[bpe.index("--out") + 1], backend="openvino").predict([red]).shape == (1, 8)


def _two_outputs(path):
    import onnx

    image_encoder(path)
    model = onnx.load(path)
    outputs = list(model.graph.output)   # "pooled" first: the embedding is not the file's first output
    del model.graph.output[:]
    model.graph.output.extend([onnx.helper.make_tensor_value_info("pooled", onnx.TensorProto.FLOAT, None)] + outputs)
    onnx.save(model, path)
    return path


def test_missing_tokenizer_and_output_folder_rules(bpe, tmp_path, capsys):
    import tools.import_model as tool

    no_tok = [a for i, a in enumerate(bpe) if a != "--tokenizer" and (i == 0 or bpe[i - 1] != "--tokenizer")]
    with pytest.raises(ConfigError, match="--text-encoder needs --tokenizer"):
        _run(no_tok)
    out = bpe[bpe.index("--out") + 1]
    os.makedirs(out)
    (tmp_path / "model" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="is not a model directory"):
        _run(bpe)
    assert (tmp_path / "model" / "notes.txt").read_text() == "mine"      # untouched
    os.remove(tmp_path / "model" / "notes.txt")
    _run(bpe)
    with pytest.raises(ConfigError, match="already holds a model.*--overwrite"):
        _run(bpe)
    spec = _run(bpe + ["--overwrite"])
    assert spec["text"]["tokenizer"]["kind"] == "bpe" and sorted(os.listdir(out)) == [
        "inference.onnx", "inference.yml", "text_encoder.onnx", "tokenizer.json"]
    inside = _set(bpe, "--image-encoder", os.path.join(out, "inference.onnx"))
    with pytest.raises(ConfigError, match="holds the input"):
        _run(inside + ["--overwrite"])
    with pytest.raises(SystemExit) as e:   # the tool: one line, exit status 2
        tool.cli(bpe[:-2] + ["--std", "0", "0.5", "0.5", "--out", str(tmp_path / "x")])
    assert e.value.code == 2 and "--std finite and > 0" in capsys.readouterr().err


def test_an_image_only_model_runs_through_the_one_embedding_path(tmp_path):
    from ppshitu.embedder import Embedder
    from ppshitu.infer.rec import RecPredictor
    from ppshitu.infer.text import TextModelError, TextPredictor

    argv = import_args(str(tmp_path), "bpe", out="dino")
    spec = _run(argv[:2] + argv[argv.index("--input-size"):] + ["--resize-short", "40", "--crop", "32"])
    assert "text" not in spec and spec["resize_short"] == 40 and spec["crop_size"] == [32, 32]
    rec = RecPredictor(str(tmp_path / "dino"), backend="openvino")
    assert rec.preprocess.resize_short == 40 and rec.preprocess.crop_size == [32, 32]
    red = np.full((50, 80, 3), (230, 30, 30), np.uint8)
    out = Embedder(rec).embed_images([("red", red)])
    assert out.vectors.shape == (1, 8) and abs(float(np.linalg.norm(out.vectors[0])) - 1) < 1e-5
    with pytest.raises(TextModelError, match="has no text encoder"):
        TextPredictor(str(tmp_path / "dino"))
