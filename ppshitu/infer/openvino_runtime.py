"""OpenVINO behind the runtime interface (`Global.inference_backend: openvino`), on CPU.

Which program a model directory gives OpenVINO (an IR, a legacy .pdmodel read directly, or a PIR program
converted once into a cached IR), and why the conversion uses ONNX opset 17: ppshitu/infer/openvino/convert.py.
The graph passes (the CPU's HardSigmoid rewrite, the f32 front layers under bf16, dynamic batch):
ppshitu/infer/openvino/passes.py. Their names are importable from here too.

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
import logging
import os

import numpy as np

from ..errors import ConfigError
from ..utils.cpu import isa_cap, kernel_flags
from .openvino import OpenVINOError, _ov  # noqa: F401  (names this module has always had)
from .openvino.convert import (CONVERTER_VERSION, IR_FILES, ONNX_OPSET, cache_root, cached_ir,  # noqa: F401
                               conversion_key, convert_pir, ir_path, make_temp_dir, resolve_program, write_ir)
from .openvino.passes import (HEAVY_OPS, dynamic_batch, front_layers, is_quantized, keep_front_f32,  # noqa: F401
                              optimize_for_cpu)
from .runtime_base import Runtime
from .spec import SPEC_FILE, read_spec

log = logging.getLogger("ppshitu.infer")

MAX_STATIC = 2  # input-shape signatures per runtime that get a model compiled for exactly their shapes
BF16_F32_LAYERS = 4  # bf16's default (Global.bf16_f32_layers); measured in bench/results/bench_runtimes.md
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


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


def precision_hint(model_dir, spec, model, precision):
    """OpenVINO's INFERENCE_PRECISION_HINT for `precision` on this model and CPU ('f32' or 'bf16'); a
    ConfigError where they disagree (int8 of a float model, a float precision of an int8 model, bf16 on a
    CPU without it)."""
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
        return "bf16"
    if precision == "int8":
        return "bf16" if bf16_support()[0] else "f32"
    return "f32"


def _port_name(port, i, prefix):
    try:
        return port.get_any_name()
    except RuntimeError:
        return f"{prefix}_{i}"


class OpenVINORuntime(Runtime):
    """rt.run({name: array}) -> {name: array}; the batch size may change from call to call."""

    @classmethod
    def config_options(cls, g):
        """OpenVINO's Global keys (enable_mkldnn, ir_optim, gpu_mem are Paddle Inference's: not read)."""
        return {"enable_profile": bool(g.get("enable_profile", False)), "bf16_f32_layers": g.get("bf16_f32_layers")}

    def __init__(self, model_dir, use_gpu=False, cpu_threads=2, precision="fp32", enable_mkldnn=True,
                 ir_optim=True, gpu_mem=8000, enable_profile=False, cache_dir=None, bf16_f32_layers=None,
                 model_file=None):
        """`model_file`: a file of the directory to run instead of its model (an imported text-image model's
        text encoder, inference.yml's text.onnx_model)."""
        del enable_mkldnn, ir_optim, gpu_mem  # Paddle Inference settings; OpenVINO has its own
        if use_gpu:
            raise ConfigError("Global.inference_backend openvino runs on CPU here; with use_gpu: True use "
                              "inference_backend: paddle")
        ov = _ov()
        self.model_dir = model_dir
        spec = read_spec(model_dir) or {}
        if model_file:
            self.program, self.source = os.path.join(model_dir, model_file), "onnx"
        else:
            self.program, self.source = resolve_program(model_dir, cache_dir)
        core = ov.Core()
        model = optimize_for_cpu(core.read_model(self.program))
        hint = precision_hint(model_dir, spec, model, precision)
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
        try:
            self.compiled = core.compile_model(dynamic_batch(model.clone()), "CPU", self._config)
        except RuntimeError:
            if self.source != "onnx":
                raise
            # an imported ONNX traced at a fixed batch (Chinese-CLIP's text encoder: [1, 52]) may not reshape;
            # it runs at the batch it was traced with (text queries come one at a time)
            self.compiled = core.compile_model(model.clone(), "CPU", self._config)
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
            # keyed by the compiled model's names (input_names, what run() is given): compiling can add a name to
            # a port (an int64 input whose Cast is folded into it also answers to the Cast's output name)
            model.reshape({p: list(shapes[self.input_names[i]]) for i, p in enumerate(model.inputs)})
            self._static[key] = self._request(self._core.compile_model(model, "CPU", self._config))
        return self._static[key]

    def port_name(self, name, kind="output"):
        """The name this runtime uses (input_names / output_names) for the port that has `name` among its
        tensor names (an ONNX port may carry several; paddle2onnx's `fetch_name_0` is one of them)."""
        ports = self.compiled.outputs if kind == "output" else self.compiled.inputs
        for i, port in enumerate(ports):
            if name in port.get_names():
                return _port_name(port, i, kind)
        known = self.output_names if kind == "output" else self.input_names
        raise ConfigError(f"{self.program}: no {kind} named {name!r}; it has {list(known)}")

    def run(self, inputs):
        inputs = {n: np.ascontiguousarray(v) for n, v in inputs.items()}
        request, outputs = self._request_for(inputs)
        request.infer(inputs, share_inputs=True)
        return {n: np.array(request.get_tensor(outputs[n]).data) for n in self.output_names}

    def __repr__(self):
        return f"OpenVINORuntime({self.program}, {self.source}, precision={self.precision})"
