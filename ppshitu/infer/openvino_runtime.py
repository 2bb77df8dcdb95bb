"""OpenVINO behind the runtime interface (`Global.inference_backend: openvino`), on CPU.

Which program a model directory gives OpenVINO, in this order:

  inference.xml + .bin     an OpenVINO IR: written by `write_ir` at export time, or by tools/quantize.py
                           (int8); `inference.yml` names it (`openvino_model: inference.xml`)
  inference.pdmodel        PP-ShiTu's published legacy models and legacy exports: read directly
                           (OpenVINO's Paddle front end, `multiclass_nms3` included)
  inference.json           Paddle 3 PIR, which OpenVINO cannot read: converted once (paddle2onnx, opset 17,
                           in a child process, then `ov.convert_model`) into an IR cached under
                           $PPSHITU_OPENVINO_CACHE (default ~/.cache/ppshitu/openvino), keyed by the program,
                           the weights and the converter versions; model directories are never written to

Why opset 17: paddle2onnx writes Paddle's hard_swish as `HardSigmoid x Mul` below opset 14. OpenVINO's CPU
plugin runs ONNX HardSigmoid with its reference kernel in plain NCHW layout, so every hard-swish of LCNet
costs two layout reorders and a reference pass, and nothing fuses into the convolutions: the PicoDet
detector ran 2.4x slower than the legacy read (profiled on PicoDet-LCNet x2.5 @640, f32: 158 reorders
~30% of the time, the 96 HardSigmoid and their Mul another ~19%). With opset 17 it is one `HardSwish`
(OpenVINO `HSwish`), fused into the convolution like the legacy read's: the converted IR then runs as
fast as the direct read of a legacy export of the same network (bench/results/bench_runtimes.md). The
upsample (reshape/expand instead of nearest_interp in ppshitu's PIR exports) costs nothing measurable.
The few HardSigmoid left (LCNet's SE blocks) are rewritten as Clamp(x * alpha + beta, 0, 1), which fuses.

Compiled for "CPU" with INFERENCE_NUM_THREADS = cpu_threads, INFERENCE_PRECISION_HINT f32 | bf16, the
LATENCY performance hint, and the batch dimension dynamic ([-1, 3, H, W]); the first MAX_STATIC input shapes
a runtime sees also get a model compiled for exactly them (the detector's one shape, a gallery build's batch
of 32), which saves the per-call shape handling. `precision`:
  fp32   f32 everywhere
  bf16   bf16 where OpenVINO chooses, except the first `bf16_f32_layers` convolution/matmul layers from the
         input (default BF16_F32_LAYERS = 4), which stay f32: bf16's error enters there and grows through
         the network (with every layer bf16, the demo's predict_system answered 97.3% of fp32's boxes alike on
         300 scenes, 99.2% with the first 4 f32, for 4% more detector time); refused unless the CPU computes
         bf16 natively (avx512_bf16 or amx_bf16 in /proc/cpuinfo, and BF16 in OpenVINO's
         OPTIMIZATION_CAPABILITIES)
  int8   a quantized IR only (tools/quantize.py writes `precision: int8` into inference.yml); its
         quantized layers run in int8, the rest in bf16 on a CPU with native bf16, else f32
A quantized directory asked to run fp32 or bf16 is refused as well: the weights are int8 either way.
"""
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

import numpy as np

from ..errors import ConfigError, PPShiTuError
from ..utils.cpu import isa_cap, kernel_flags
from .runtime import RUNTIMES, Runtime, model_files
from .spec import SPEC_FILE, read_spec

log = logging.getLogger("ppshitu.infer")

IR_FILES = ("inference.xml", "inference.bin")
ONNX_OPSET = 17
CONVERTER_VERSION = 2  # bump when the conversion changes, so cached IRs are rebuilt
MAX_STATIC = 2  # input-shape signatures per runtime that get a model compiled for exactly their shapes
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


class OpenVINOError(PPShiTuError):
    pass


def _ov():
    try:
        import openvino
    except ImportError as e:
        raise ConfigError("Global.inference_backend openvino: the openvino package is not installed "
                          "(pip install openvino; see requirements.txt)") from e
    return openvino


# ---------------------------------------------------------------- CPU capabilities
def bf16_support():
    """(supported, why): native bf16 needs avx512_bf16 or amx_bf16 and OpenVINO's BF16 capability."""
    flags = kernel_flags()
    native = [f for f in _BF16_FLAGS if f in flags]
    caps = list(_ov().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    if not native:
        capped = f" within ONEDNN_MAX_CPU_ISA={isa_cap()}" if isa_cap() else ""
        return False, f"the CPU lacks {' and '.join(_BF16_FLAGS)}{capped} (/proc/cpuinfo flags)"
    if "BF16" not in caps:
        return False, f"OpenVINO's CPU OPTIMIZATION_CAPABILITIES {caps} lack BF16"
    return True, f"{', '.join(native)}; OpenVINO capabilities {caps}"


def check_bf16():
    ok, why = bf16_support()
    if not ok:
        raise ConfigError(f"Global.precision bf16: this CPU does not compute bf16 natively: {why}. "
                          f"Use precision fp32 (or int8 with a model from tools/quantize.py)")
    return why


# ---------------------------------------------------------------- which program
def ir_path(model_dir, spec=None):
    """The IR .xml to run, or None. inference.yml's `openvino_model` names it; an unnamed inference.xml is
    used only where the directory has no Paddle program (a re-export leaves an old IR behind, and it
    rewrites inference.yml without the name, so that IR is ignored)."""
    spec = read_spec(model_dir) if spec is None else spec
    named = (spec or {}).get("openvino_model")
    xml = os.path.join(model_dir, named or IR_FILES[0])
    present = os.path.isfile(xml) and os.path.isfile(os.path.splitext(xml)[0] + ".bin")
    if named:
        if not present:
            raise ConfigError(f"{os.path.join(model_dir, SPEC_FILE)}: openvino_model {named!r} is missing "
                              f"(or its .bin is)")
        return xml
    if present and model_files(model_dir)[0].endswith(".xml"):
        return xml
    return None


def resolve_program(model_dir, cache_dir=None):
    """(path OpenVINO reads, kind): kind is 'ir', 'legacy' (direct .pdmodel read) or 'converted'."""
    spec = read_spec(model_dir)
    xml = ir_path(model_dir, spec)
    if xml:
        return xml, "ir"
    prog, params = model_files(model_dir)
    if prog.endswith(".pdmodel"):
        return prog, "legacy"
    return cached_ir(model_dir, prog, params, cache_dir), "converted"


def cache_root(cache_dir=None):
    return (cache_dir or os.environ.get("PPSHITU_OPENVINO_CACHE")
            or os.path.join(os.path.expanduser("~"), ".cache", "ppshitu", "openvino"))


def _converter_versions():
    from importlib.metadata import PackageNotFoundError, version

    out = {"converter": CONVERTER_VERSION, "opset": ONNX_OPSET}
    for pkg in ("openvino", "paddle2onnx", "paddlepaddle"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def conversion_key(prog, params):
    h = hashlib.sha256(json.dumps(_converter_versions(), sort_keys=True).encode())
    for path in (prog, params):
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:24]


def cached_ir(model_dir, prog, params, cache_dir=None):
    """The IR of a PIR program, converted on first use and cached; returns the .xml path."""
    out = os.path.join(cache_root(cache_dir), conversion_key(prog, params))
    xml = os.path.join(out, IR_FILES[0])
    if os.path.isfile(xml) and os.path.isfile(os.path.join(out, IR_FILES[1])):
        return xml
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = make_temp_dir(os.path.dirname(out))
    try:
        log.info("converting %s to OpenVINO IR (once; cached in %s)", model_dir, out)
        convert_pir(prog, params, os.path.join(tmp, IR_FILES[0]))
        try:
            os.rename(tmp, out)
        except OSError:  # another process converted it first
            if not os.path.isfile(xml):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return xml


def make_temp_dir(parent, prefix=".tmp-"):
    """A temporary directory inside `parent` (renamed into place when complete), with the
    permissions a plain mkdir would give it (mkdtemp's are 0700)."""
    tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    return tmp


def convert_pir(prog, params, xml_out):
    """PIR inference.json + .pdiparams -> OpenVINO IR at `xml_out` (paddle2onnx runs in a child process:
    it needs PIR on, which a process that loaded a legacy model may not have, and it prints a lot)."""
    try:
        import paddle2onnx  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"{os.path.dirname(prog)}: OpenVINO cannot read a PIR program (inference.json); "
                          f"converting it needs paddle2onnx (pip install paddle2onnx), or export with "
                          f"Global.export_format: legacy, or write the IR at export time "
                          f"(ppshitu.infer.openvino_runtime.write_ir)") from e
    onnx_path = os.path.splitext(xml_out)[0] + ".onnx"
    env = dict(os.environ, FLAGS_enable_pir_api="1")
    env.setdefault("OMP_NUM_THREADS", "1")
    code = ("import sys, paddle2onnx; paddle2onnx.export(sys.argv[1], sys.argv[2], sys.argv[3], "
            "opset_version=int(sys.argv[4]), auto_upgrade_opset=False, enable_onnx_checker=True, "
            "enable_optimize=True)")
    proc = subprocess.run([sys.executable, "-c", code, prog, params, onnx_path, str(ONNX_OPSET)], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0 or not os.path.isfile(onnx_path):
        raise OpenVINOError(f"{prog}: paddle2onnx failed:\n{(proc.stderr or proc.stdout)[-3000:]}")
    ov = _ov()
    model = optimize_for_cpu(ov.convert_model(onnx_path))
    ov.save_model(model, xml_out, compress_to_fp16=False)  # fp16 weights would change fp32 results
    os.remove(onnx_path)
    return xml_out


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


def write_ir(model_dir):
    """Write inference.xml/.bin beside a Paddle export (PIR or legacy) and name them in inference.yml
    (`openvino_model`), so the openvino backend loads them without converting. Returns the .xml path."""
    from .spec import write_spec

    prog, params = model_files(model_dir)
    if prog.endswith(".xml"):
        raise ConfigError(f"{model_dir}: holds an OpenVINO IR only; there is no Paddle program to convert")
    xml = os.path.join(model_dir, IR_FILES[0])
    if prog.endswith(".pdmodel"):
        ov = _ov()
        ov.save_model(optimize_for_cpu(ov.Core().read_model(prog)), xml, compress_to_fp16=False)
    else:  # through the conversion cache: a model already run on openvino is not converted again
        cached = cached_ir(model_dir, prog, params)
        for src, dst in zip((cached, os.path.splitext(cached)[0] + ".bin"), IR_FILES):
            shutil.copyfile(src, os.path.join(model_dir, dst))
    spec = read_spec(model_dir)
    if spec is not None:
        spec["openvino_model"] = IR_FILES[0]
        write_spec(model_dir, **spec)
    return xml


# ---------------------------------------------------------------- f32 where bf16 costs accuracy
HEAVY_OPS = ("Convolution", "GroupConvolution", "MatMul")
BF16_F32_LAYERS = 4  # bf16's default (Global.bf16_f32_layers); measured in bench/results/bench_runtimes.md
# The IR form of ov::disable_conversion(node, f16): the CPU plugin keeps such a node in its original precision
# under any reduced-precision hint (bf16 included). Python cannot set the typed attribute, an IR can carry it.
_KEEP_PRECISION = {"name": "DisablePrecisionConversion", "version": "0", "value": "dynamic:f16"}


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
        xml = os.path.join(tmp, IR_FILES[0])
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


def _port_name(port, i, prefix):
    try:
        return port.get_any_name()
    except RuntimeError:
        return f"{prefix}_{i}"


@RUNTIMES.register("openvino")
class OpenVINORuntime(Runtime):
    """rt.run({name: array}) -> {name: array}; the batch size may change from call to call."""

    def __init__(self, model_dir, use_gpu=False, cpu_threads=2, precision="fp32", enable_mkldnn=True,
                 ir_optim=True, gpu_mem=8000, enable_profile=False, cache_dir=None, bf16_f32_layers=None):
        del enable_mkldnn, ir_optim, gpu_mem  # Paddle Inference settings; OpenVINO has its own
        if use_gpu:
            raise ConfigError("Global.inference_backend openvino runs on CPU here; with use_gpu: True use "
                              "inference_backend: paddle")
        ov = _ov()
        self.model_dir = model_dir
        spec = read_spec(model_dir) or {}
        self.program, self.source = resolve_program(model_dir, cache_dir)
        core = ov.Core()
        model = optimize_for_cpu(core.read_model(self.program))
        quantized = spec.get("precision") == "int8" or is_quantized(model)
        where = os.path.join(model_dir, SPEC_FILE)
        if precision == "int8" and not quantized:
            raise ConfigError(f"Global.precision int8: {model_dir} is not a quantized model (no FakeQuantize "
                              f"layers, no 'precision: int8' in {SPEC_FILE}); write one with "
                              f"tools/quantize.py -c CONFIG --calib IMAGES --out DIR and point the model dir "
                              f"at DIR")
        if quantized and precision != "int8":
            raise ConfigError(f"{where}: this is an int8 model (tools/quantize.py); set Global.precision: int8 "
                              f"to run it (got {precision!r}), or use the fp32 model it was quantized from")
        if precision == "bf16":
            check_bf16()
            hint = "bf16"
        elif precision == "int8":
            hint = "bf16" if bf16_support()[0] else "f32"
        else:
            hint = "f32"
        self.precision, self.precision_hint = precision, hint
        self.f32_layers = 0
        if precision == "bf16":
            self.f32_layers = BF16_F32_LAYERS if bf16_f32_layers is None else int(bf16_f32_layers)
            model = keep_front_f32(model, self.f32_layers)
        self._config = {"INFERENCE_NUM_THREADS": int(cpu_threads), "INFERENCE_PRECISION_HINT": hint,
                        "PERFORMANCE_HINT": "LATENCY"}
        if enable_profile:
            self._config["PERF_COUNT"] = True
        self._core, self._model = core, model
        self.compiled = core.compile_model(dynamic_batch(model.clone()), "CPU", self._config)
        self.input_names = [_port_name(p, i, "input") for i, p in enumerate(self.compiled.inputs)]
        self.output_names = [_port_name(p, i, "output") for i, p in enumerate(self.compiled.outputs)]
        self._dynamic = self._request(self.compiled)
        self._static = {}  # input shapes -> the request of a model compiled for exactly them
        self._static_ok = all(p.get_partial_shape().rank.is_static and all(d.is_static for d in list(
            p.get_partial_shape())[1:]) for p in model.inputs)
        log.debug("openvino %s (%s) precision %s, hint %s, %d threads", self.program, self.source, precision,
                  hint, cpu_threads)

    def _request(self, compiled):
        names = [_port_name(p, i, "output") for i, p in enumerate(compiled.outputs)]
        return compiled.create_infer_request(), dict(zip(names, compiled.outputs))

    def _request_for(self, inputs):
        """The first MAX_STATIC input-shape signatures seen get a model compiled for exactly those shapes
        (no shape inference per call: ~3 ms less per call on the demo detector, ~5% on PicoDet x2.5);
        others run on the dynamic-batch model."""
        if not self._static_ok:
            return self._dynamic
        key = tuple((n, tuple(v.shape)) for n, v in sorted(inputs.items()))
        if key not in self._static:
            if len(self._static) >= MAX_STATIC:
                return self._dynamic
            shapes = dict(key)
            model = self._model.clone()
            model.reshape({p: list(shapes[_port_name(p, i, "input")]) for i, p in enumerate(model.inputs)})
            self._static[key] = self._request(self._core.compile_model(model, "CPU", self._config))
        return self._static[key]

    def run(self, inputs):
        inputs = {n: np.ascontiguousarray(v) for n, v in inputs.items()}
        request, outputs = self._request_for(inputs)
        request.infer(inputs, share_inputs=True)
        return {n: np.array(request.get_tensor(outputs[n]).data) for n in self.output_names}

    def __repr__(self):
        return f"OpenVINORuntime({self.program}, {self.source}, precision={self.precision})"
