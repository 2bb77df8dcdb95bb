"""Graph passes on an OpenVINO model (ov.Model): what the CPU plugin runs faster, and where bf16 costs accuracy.

    optimize_for_cpu(model)        ONNX HardSigmoid -> Clamp(x * alpha + beta, 0, 1), which fuses
    front_layers(model, n)         the nodes before or among the first n convolution / matmul layers
    keep_front_f32(model, n)       those nodes marked to stay f32 under the bf16 precision hint
    dynamic_batch(model)           dimension 0 of every input made dynamic
    is_quantized(model)            whether it holds FakeQuantize layers (an int8 IR)
"""
import os
import tempfile
import xml.etree.ElementTree as ET

from . import _ov

HEAVY_OPS = ("Convolution", "GroupConvolution", "MatMul")
# The IR form of ov::disable_conversion(node, f16): the CPU plugin keeps such a node in its original precision
# under any reduced-precision hint (bf16 included). Python cannot set the typed attribute, an IR can carry it.
_KEEP_PRECISION = {"name": "DisablePrecisionConversion", "version": "0", "value": "dynamic:f16"}


def optimize_for_cpu(model):
    """Rewrite ONNX HardSigmoid as Clamp(x * alpha + beta, 0, 1): the CPU plugin has only a reference
    HardSigmoid kernel (planar layout, reorders on both sides, no fusion); the rewrite fuses."""
    _ov()
    from openvino import opset13 as ops

    for node in list(model.get_ordered_ops()):
        if node.get_type_name() != "HardSigmoid":
            continue
        x, alpha, beta = (node.input_value(i) for i in range(3))
        y = ops.clamp(ops.add(ops.multiply(x, alpha), beta), 0.0, 1.0)
        y.set_friendly_name(node.get_friendly_name())
        node.output(0).replace(y.output(0))
    model.validate_nodes_and_infer_types()
    return model


def front_layers(model, layers):
    """Friendly names of the nodes of `model` that come before or among its first `layers` convolution /
    matmul layers: a node's count is the most such layers on any path from a Parameter to it, itself
    included. Parameters, Results, Constants and what only Constants feed are left out."""
    depth, data, names = {}, {}, set()
    for op in model.get_ordered_ops():  # topological
        preds = [i.get_source_output().get_node() for i in op.inputs()]
        key, kind = op.get_friendly_name(), op.get_type_name()
        data[key] = kind == "Parameter" or any(data[p.get_friendly_name()] for p in preds)
        depth[key] = max((depth[p.get_friendly_name()] for p in preds), default=0) + (kind in HEAVY_OPS)
        if data[key] and depth[key] <= layers and kind not in ("Parameter", "Result"):
            names.add(key)
    return names


def keep_front_f32(model, layers):
    """`model` with its first `layers` convolution / matmul layers (front_layers) marked to run in f32 under
    the bf16 hint. Why: bf16 error enters at the high-resolution start of a network and grows through it;
    there it also moves the detector's boxes and scores enough to change predict_system's answers (on the
    demo detector the first 4 layers in f32 halve the score error; bench_runtimes.md measures it)."""
    if layers <= 0:
        return model
    ov = _ov()
    with tempfile.TemporaryDirectory() as tmp:
        xml = os.path.join(tmp, "inference.xml")
        ov.save_model(model, xml, compress_to_fp16=False)
        tree = ET.parse(xml)  # our own serialization, not outside input
        marked = front_layers(model, layers)
        for layer in tree.getroot().iter("layer"):
            if layer.get("name") in marked:
                rt = layer.find("rt_info")
                ET.SubElement(rt if rt is not None else ET.SubElement(layer, "rt_info"), "attribute", _KEEP_PRECISION)
        tree.write(xml)
        # the weights are read here (or mapped: Linux keeps a mapped file readable after it is unlinked)
        return ov.Core().read_model(xml)


def is_quantized(model):
    return any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


def dynamic_batch(model):
    """Make dimension 0 of every input dynamic (the rest as exported)."""
    ov = _ov()
    shapes = {}
    for port in model.inputs:
        shape = port.get_partial_shape()
        if shape.rank.is_dynamic or len(shape) == 0 or shape[0].is_dynamic:
            continue
        dims = list(shape)
        dims[0] = ov.Dimension()
        shapes[port] = ov.PartialShape(dims)
    if shapes:
        model.reshape(shapes)
    return model
