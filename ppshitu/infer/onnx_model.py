"""What an ONNX encoder file is, checked against the kind it is imported as (tools/import_model.py).

    info = inspect_onnx("img.onnx")                     # OnnxInfo: inputs, outputs [(name, dtype, dims)]
    out = image_encoder_io(info, input_size=(224, 224))  # {"input_name", "output_name", "embedding_size"}
    out = text_encoder_io(info, context_length=77)       # {"input_name", "mask_name", "output_name", ...}
    rows = embedding_rows(info)                         # rows of the token-embedding table, or None

Dims are ints where the file fixes them, None where they are symbolic (a dynamic batch, say). Every refusal is
an ImportModelError naming the file and what it holds against what the kind needs.
"""
from dataclasses import dataclass, field

from ..errors import ConfigError

_FLOAT, _INT32, _INT64 = 1, 6, 7
_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64",
           16: "bfloat16"}
# ops a token id passes through unchanged on its way to the embedding lookup (exporters insert them)
_ID_PASS_OPS = ("Cast", "Reshape", "Unsqueeze", "Squeeze", "Identity", "Flatten")
MAX_VOCAB_PADDING = 128  # embedding-table rows past the tokenizer's vocabulary that are still a match


class ImportModelError(ConfigError):
    """An ONNX file or tokenizer that does not fit what it is imported as."""


@dataclass
class OnnxInfo:
    path: str
    inputs: list = field(default_factory=list)    # [(name, dtype name, [dim or None])]
    outputs: list = field(default_factory=list)
    model: object = None                          # the onnx ModelProto (weights not loaded when external)

    def describe(self, ports):
        return ", ".join(f"{n} {t}[{', '.join('?' if d is None else str(d) for d in dims)}]" for n, t, dims in ports)


def _dims(value_info):
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in shape.dim]


def inspect_onnx(path):
    """OnnxInfo of the ONNX file `path` (its graph's real inputs: initializers listed as inputs are not);
    ImportModelError naming it when it is not an ONNX model or keeps its weights in external files."""
    import onnx

    from ..utils.files import check_input_file

    check_input_file(path, "ONNX model", error=ImportModelError)
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends: not an ONNX file
        raise ImportModelError(f"{path}: not an ONNX model ({type(e).__name__}: {str(e)[:200]})") from None
    if not len(model.graph.output):
        raise ImportModelError(f"{path}: not an ONNX model (its graph has no outputs)")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise ImportModelError(f"{path}: its weights are in external data files; save the model with its weights "
                               f"inside (onnx.save(model, path, save_as_external_data=False); up to 2 GB)")
    weights = {t.name for t in model.graph.initializer}
    info = OnnxInfo(path, model=model)
    for vi in model.graph.input:
        if vi.name not in weights:
            info.inputs.append((vi.name, _DTYPES.get(vi.type.tensor_type.elem_type, "other"), _dims(vi)))
    for vi in model.graph.output:
        info.outputs.append((vi.name, _DTYPES.get(vi.type.tensor_type.elem_type, "other"), _dims(vi)))
    return info


def _embedding_output(info, name, flag):
    """(output name, D or None): the output named `name`, else the graph's only output; rank 2 [N, D]."""
    if name is not None:
        chosen = [o for o in info.outputs if o[0] == name]
        if not chosen:
            raise ImportModelError(f"{info.path}: no output named {name!r} ({flag}); its outputs: "
                                   f"{info.describe(info.outputs)}")
    elif len(info.outputs) != 1:
        raise ImportModelError(f"{info.path}: {len(info.outputs)} outputs ({info.describe(info.outputs)}); name the "
                               f"embedding with {flag} NAME")
    else:
        chosen = info.outputs
    out_name, dtype, dims = chosen[0]
    if len(dims) != 2 or dtype not in ("float32", "float16"):
        raise ImportModelError(f"{info.path}: output {out_name} is {info.describe(chosen)}; an encoder's embedding "
                               f"output must be float32 [N, D] (one vector per input)")
    return out_name, dims[1]


def image_encoder_io(info, input_size, output_name=None):
    """An image encoder: one float32 input [N, 3, H, W] (H, W fixed to `input_size` or free), one embedding
    output [N, D]."""
    if len(info.inputs) != 1:
        raise ImportModelError(f"{info.path}: an image encoder has one input [N, 3, H, W]; this file has "
                               f"{len(info.inputs)}: {info.describe(info.inputs)} (a text encoder? pass it as "
                               f"--text-encoder)")
    name, dtype, dims = info.inputs[0]
    if dtype != "float32" or len(dims) != 4 or dims[1] not in (None, 3):
        raise ImportModelError(f"{info.path}: input {info.describe(info.inputs)} is not an image; an image encoder "
                               f"takes float32 [N, 3, H, W] (RGB, normalised){_text_hint(dtype)}")
    h, w = (int(v) for v in input_size)
    if dims[2] not in (None, h) or dims[3] not in (None, w):
        raise ImportModelError(f"{info.path}: input {name} is fixed at {dims[2]}x{dims[3]} but --input-size is "
                               f"{h}x{w}; import it with --input-size {dims[2]} (or {dims[2]}x{dims[3]})")
    out_name, d = _embedding_output(info, output_name, "--image-output")
    return {"input_name": name, "output_name": out_name, "embedding_size": d}


def _text_hint(dtype):
    return " (integer input: a text encoder? pass it as --text-encoder)" if dtype in ("int64", "int32") else ""


def text_encoder_io(info, context_length=None, output_name=None):
    """A text encoder: token ids int64/int32 [N, L] (`input_ids`, or its only integer input), optionally an
    `attention_mask` of the same shape, one embedding output [N, D]; L fixed in the file must equal
    `context_length` (None: L from the file)."""
    ints = [i for i in info.inputs if i[1] in ("int64", "int32")]
    if not info.inputs or len(info.inputs) > 2 or len(ints) != len(info.inputs):
        raise ImportModelError(f"{info.path}: a text encoder takes token ids int64 [N, L] (and optionally an "
                               f"attention_mask); this file takes {info.describe(info.inputs)}"
                               f"{' (an image encoder? pass it as --image-encoder)' if info.inputs and info.inputs[0][1] == 'float32' else ''}")
    masks = [i for i in ints if "mask" in i[0].lower()]
    ids = [i for i in ints if i not in masks]
    if len(ids) != 1 or len(masks) > 1:
        raise ImportModelError(f"{info.path}: cannot tell the token ids from the mask among its inputs "
                               f"{info.describe(info.inputs)}; name them input_ids and attention_mask")
    (name, dtype, dims), mask = ids[0], (masks[0] if masks else None)
    if len(dims) != 2 or (mask is not None and len(mask[2]) != 2):
        raise ImportModelError(f"{info.path}: token ids must be [N, L]; got {info.describe(ints)}")
    if dims[1] is not None and context_length is not None and dims[1] != int(context_length):
        raise ImportModelError(f"{info.path}: input {name} is fixed at context length {dims[1]} but "
                               f"--context-length is {context_length}")
    length = int(context_length) if context_length is not None else dims[1]
    if length is None:
        raise ImportModelError(f"{info.path}: input {name} has no fixed length; give --context-length "
                               f"(77 for CLIP/OpenCLIP, 52 for Chinese-CLIP)")
    out_name, d = _embedding_output(info, output_name, "--text-output")
    return {"input_name": name, "input_dtype": dtype, "mask_name": mask[0] if mask else None,
            "output_name": out_name, "embedding_size": d, "context_length": length}


def embedding_rows(info, ids_name):
    """(rows, initializer name) of the table the token ids index (a Gather of a 2-d weight whose indices
    come from `ids_name`, through casts and reshapes), or (None, None) when the graph does not show one."""
    from onnx import numpy_helper  # noqa: F401  (the weights' shapes are read from the protos)

    g = info.model.graph
    shapes = {t.name: list(t.dims) for t in g.initializer}
    for node in g.node:  # Constant nodes and Identity of a weight also carry tables
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    shapes[node.output[0]] = list(a.t.dims)
    for node in g.node:
        if node.op_type == "Identity" and node.input[0] in shapes:
            shapes[node.output[0]] = shapes[node.input[0]]
    carries, frontier = {ids_name}, [ids_name]
    consumers = {}
    for node in g.node:
        for x in node.input:
            consumers.setdefault(x, []).append(node)
    while frontier:
        tensor = frontier.pop()
        for node in consumers.get(tensor, []):
            if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] == tensor:
                table = shapes.get(node.input[0])
                if table is not None and len(table) == 2:
                    return int(table[0]), node.input[0]
            elif node.op_type in _ID_PASS_OPS and node.input[0] == tensor:
                for out in node.output:
                    if out not in carries:
                        carries.add(out)
                        frontier.append(out)
    return None, None


def check_vocab_fits(rows, table, vocab_size, tokenizer_path, onnx_path):
    """The tokenizer's vocabulary must fit the text encoder's embedding table: no id past its rows, and no
    more than MAX_VOCAB_PADDING rows unused (a table padded to a round size still matches; a table for
    another vocabulary does not)."""
    if rows is None:
        return
    if vocab_size > rows or rows - vocab_size > MAX_VOCAB_PADDING:
        raise ImportModelError(f"{tokenizer_path}: the tokenizer has {vocab_size} tokens but the text encoder "
                               f"{onnx_path} embeds {rows} (its table {table}); this tokenizer does not belong to "
                               f"this text encoder")
