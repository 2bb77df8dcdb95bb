"""The contract as the project's own text-image model meets it: a tiny Paddle image tower and text tower (an
Embedding table over a BPE tokenizer's vocabulary) exported with paddle.onnx.export (paddle2onnx), imported by
tools/import_model.py, then run through ppshitu's predictors: both give Paddle's own vectors (cosine > 0.999),
and the vocabulary check finds the table behind paddle2onnx's graph."""
import os

import numpy as np

from textsearch_helpers import bpe_tokenizer


def _towers(vocab, dim=16):
    import paddle
    from paddle import nn

    class Image(nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2D(3, 8, 3), nn.Linear(8, dim)

        def forward(self, x):
            return self.fc(paddle.mean(self.conv(x), axis=[2, 3]))

    class Text(nn.Layer):
        def __init__(self):
            super().__init__()
            self.emb, self.fc = nn.Embedding(vocab, dim), nn.Linear(dim, dim)

        def forward(self, input_ids):
            return self.fc(paddle.mean(self.emb(input_ids), axis=1))

    paddle.seed(3)
    image, text = Image(), Text()
    image.eval()
    text.eval()
    return image, text


def test_paddle2onnx_towers_import_and_match_paddle(tmp_path):
    import paddle

    import tools.import_model as tool
    from ppshitu.infer.rec import RecPredictor
    from ppshitu.infer.text import TextPredictor

    tok = bpe_tokenizer(str(tmp_path / "tokenizer.json"))
    image, text = _towers(tok.get_vocab_size())
    spec = paddle.static.InputSpec
    paddle.onnx.export(image, str(tmp_path / "img"), input_spec=[spec([None, 3, 32, 32], "float32", "x")],
                       opset_version=17)
    paddle.onnx.export(text, str(tmp_path / "txt"), input_spec=[spec([None, 12], "int64", "input_ids")],
                       opset_version=17)
    out = str(tmp_path / "model")
    got = tool.main(["--image-encoder", str(tmp_path / "img.onnx"), "--text-encoder", str(tmp_path / "txt.onnx"),
                     "--tokenizer", str(tmp_path / "tokenizer.json"), "--input-size", "32", "--mean", "0.5", "0.5",
                     "0.5", "--std", "0.5", "0.5", "0.5", "--out", out])
    assert got["text"]["embedding_rows"] == tok.get_vocab_size() and got["text"]["tokenizer"]["context_length"] == 12

    predictor = TextPredictor(out)
    queries = ["a red car", "a small green frog on a leaf"]
    ours = predictor.embed(queries).vectors
    ids = predictor.tokenizer.encode(queries).ids
    theirs = text(paddle.to_tensor(ids)).numpy()
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    assert np.all(np.sum(ours * theirs, axis=1) > 0.999)

    rec = RecPredictor(out, backend="openvino")
    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    ref = image(paddle.to_tensor(rec.preprocess(rgb)[None])).numpy()[0]
    assert float(rec.predict([rgb])[0] @ (ref / np.linalg.norm(ref))) > 0.999
    assert sorted(os.listdir(out)) == ["inference.onnx", "inference.yml", "text_encoder.onnx", "tokenizer.json"]
