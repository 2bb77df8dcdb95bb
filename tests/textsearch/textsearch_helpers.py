"""Tiny text-image models the text-search tests build themselves: ONNX encoders from the onnx helper API and
both tokenizer kinds trained with the `tokenizers` library, so import, tokenization, indexing and search run
for real on files no download provides.

The image tower averages the normalised image per channel and maps it by a fixed matrix W [3, D]; the text
tower averages the token embeddings of a query (a Gather over a table, then ReduceMean). A colour word's row is
W applied to that colour's normalised mean, so "a red car" lands on the red images: what a trained model does,
made exact.
"""
import os

import numpy as np

D = 8
COLOURS = {"red": (230, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
CHINESE = {"red": "红", "green": "绿", "blue": "蓝"}
SENTENCES = ["a red car", "a green tree", "a blue sky", "red", "green", "blue", "a photo of a car",
             "the red and blue and green things", "a small green frog on a leaf"]
SENTENCES_ZH = ["红色的汽车", "绿色的树", "蓝色的天空", "一只红色的鸟", "蓝色和绿色"]
W = np.random.default_rng(7).normal(size=(3, D)).astype(np.float32)
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def colour_vector(rgb):
    """The image tower's output for a flat image of `rgb` (before normalisation)."""
    x = (np.asarray(rgb, np.float32) / 255.0 - np.asarray(MEAN)) / np.asarray(STD)
    return x @ W


def image_encoder(path, size=32, output_name="embedding"):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("GlobalAveragePool", ["pixels"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "W"], [output_name])]
    graph = helper.make_graph(nodes, "image_tower",
                              [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, size, size])],
                              [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", D])],
                              [numpy_helper.from_array(W, "W")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def token_table(tokenizer, kind, rows=None):
    """[V, D]: a colour word's tokens carry its colour's image vector, everything else 0."""
    table = np.zeros((rows or tokenizer.get_vocab_size(), D), np.float32)
    for name, rgb in COLOURS.items():
        words = [name, " " + name] if kind == "bpe" else [name, CHINESE[name]]
        for w in words:
            for i in tokenizer.encode(w, add_special_tokens=False).ids:
                table[i] = colour_vector(rgb)
    return table


def text_encoder(path, table, length=16, with_mask=False, dtype="int64", output_name="text_embedding"):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    int_type = TensorProto.INT64 if dtype == "int64" else TensorProto.INT32
    inputs = [helper.make_tensor_value_info("input_ids", int_type, ["N", length])]
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["tokens"], axis=0)]
    last = "tokens"
    if with_mask:
        inputs.append(helper.make_tensor_value_info("attention_mask", int_type, ["N", length]))
        nodes += [helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
                  helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
                  helper.make_node("Mul", ["tokens", "mask3"], ["masked"])]
        last = "masked"
    nodes.append(helper.make_node("ReduceMean", [last, "axis1"], [output_name], keepdims=0))
    inits = [numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.array([1], np.int64), "axis1"),
             numpy_helper.from_array(np.array([2], np.int64), "axis2")]
    graph = helper.make_graph(nodes, "text_tower", inputs,
                              [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", table.shape[1]])],
                              inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


def bpe_tokenizer(path):
    """A byte-level BPE tokenizer.json with CLIP's start/end tokens, trained on SENTENCES."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|pad|>", "<|startoftext|>", "<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=1,
                                  show_progress=False)
    tok.train_from_iterator(SENTENCES * 3, trainer)
    tok.save(path)
    return tok


def wordpiece_vocab(path):
    """A BERT WordPiece vocab.txt (Chinese characters one token each), trained on both languages."""
    from tokenizers.implementations import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer(lowercase=True, handle_chinese_chars=True)
    tok.train_from_iterator(SENTENCES + SENTENCES_ZH, vocab_size=400, min_frequency=1, show_progress=False)
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(t + "\n" for t, _ in vocab)
    return tok


def colour_images(folder, per_colour=3, size=64, seed=0):
    """`per_colour` textured images of each colour, in a sub-folder named for it: {path: colour}."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    out = {}
    for name, rgb in COLOURS.items():
        for i in range(per_colour):
            noise = rng.integers(-20, 21, size=(size, size, 3))
            img = np.clip(np.asarray(rgb)[None, None, :] + noise, 0, 255).astype(np.uint8)
            os.makedirs(os.path.join(folder, name), exist_ok=True)
            path = os.path.join(folder, name, f"{i:03d}.png")  # label: the sub-folder (index_folder)
            Image.fromarray(img).save(path)
            out[path] = name
    return out


def import_args(tmp, kind="bpe", with_mask=False, length=16, out="model", **extra):
    """Files of a text-image model of `kind` under `tmp`, and the import_model arguments for them."""
    os.makedirs(tmp, exist_ok=True)
    img = image_encoder(os.path.join(tmp, "img.onnx"))
    if kind == "bpe":
        tok = bpe_tokenizer(os.path.join(tmp, "tokenizer.json"))
        tok_file = os.path.join(tmp, "tokenizer.json")
    else:
        tok = wordpiece_vocab(os.path.join(tmp, "vocab.txt"))
        tok_file = os.path.join(tmp, "vocab.txt")
    from ppshitu.infer.text_tokenizer import load_tokenizer

    txt = text_encoder(os.path.join(tmp, "txt.onnx"), token_table(load_tokenizer(kind, tok_file), kind),
                       length=length, with_mask=with_mask)
    del tok
    argv = ["--image-encoder", img, "--text-encoder", txt, "--tokenizer", tok_file, "--input-size", "32",
            "--mean", *map(str, MEAN), "--std", *map(str, STD), "--out", os.path.join(tmp, out)]
    for k, v in extra.items():
        argv += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return argv


CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs",
                      "inference", "inference_general.yaml")


def cli(model_dir, index_dir, output_dir, **extra):
    """-c/-o arguments of a tool running the imported model (whatever the config's backend: ONNX runs on OpenVINO)."""
    o = [f"Global.rec_inference_model_dir={model_dir}", "Global.cpu_num_threads=1", f"Global.output_dir={output_dir}",
         f"IndexProcess.index_dir={index_dir}", "IndexProcess.use_det=False"] + [f"{k}={v}" for k, v in extra.items()]
    return ["-c", CONFIG] + [a for x in o for a in ("-o", x)]
