"""Paddle Inference behind the runtime interface.

A model directory holds `inference.json` (Paddle 3 PIR) or `inference.pdmodel` (the pre-3.0 format
PP-ShiTu's published models use) with `inference.pdiparams`. oneDNN is on by default on CPU (4-6x faster
here; Paddle 3 turns it on by itself, so off must be asked for); zero-copy handles; legacy programs get
the memory-optimisation pass PaddleClas uses (Paddle 3.3 refuses it for PIR). On CPU, glibc's malloc is asked
to keep freed blocks in its heap (keep_freed_buffers): that, not the program format, was why PIR programs ran
at ~0.65x the legacy ones' speed.
"""
import ctypes
import functools

from ..errors import ConfigError
from .runtime_base import Runtime, model_files

KEEP_FREED_BYTES = 1 << 30  # glibc malloc keeps freed blocks below this in the heap (keep_freed_buffers)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers


@functools.cache  # process-wide setting: tried once (a second call on a race only sets the same values)
def keep_freed_buffers():
    """Once per process, where the C library is glibc: malloc serves blocks up to KEEP_FREED_BYTES from its heap
    and keeps what is freed there, instead of mapping each large block afresh. Why: Paddle's PIR executor frees
    and re-allocates every activation on every run (the memory-optimisation pass that reuses them in legacy
    programs is refused for PIR), and a block over glibc's mmap threshold (32 MB at most) is a new mapping each
    time whose pages fault in again: PIR MobileNetV1 at batch 32 ran 136 img/s with ~1.2M page faults, 222 img/s
    with this (the legacy program 211; bench/results/bench.txt). Freed activations stay resident for the next
    run, as they would be with buffer reuse. Returns whether it applied."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, KEEP_FREED_BYTES)
                    and libc.mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES))
    except (OSError, AttributeError):  # not glibc: its allocator has its own policy
        return False


def create_predictor(model_dir, use_gpu=False, enable_mkldnn=True, cpu_threads=2, precision="fp32",
                     ir_optim=True, gpu_mem=8000, enable_profile=False, bf16_f32_layers=None):
    """A paddle.inference predictor for `model_dir`."""
    from paddle import inference

    if bf16_f32_layers is not None and precision == "bf16":
        raise ConfigError("Global.bf16_f32_layers applies to inference_backend: openvino; Paddle's bf16 "
                          "(enable_mkldnn_bfloat16) chooses its bf16 operators by type, not by position")
    if precision == "int8":
        raise ConfigError("Global.precision int8: the Paddle runtime runs no quantized model; use "
                          "inference_backend: openvino with a model written by tools/quantize.py")
    if precision == "bf16" and (use_gpu or not enable_mkldnn):
        raise ConfigError("Global.precision bf16 runs on CPU with oneDNN only (enable_mkldnn: True, use_gpu: False)")
    prog, params = model_files(model_dir)
    if prog.endswith((".xml", ".onnx")):
        raise ConfigError(f"{model_dir}: holds an {'ONNX' if prog.endswith('.onnx') else 'OpenVINO'} model only "
                          f"({prog}); run it with Global.inference_backend: openvino")
    config = inference.Config(prog, params)
    if use_gpu:
        config.enable_use_gpu(gpu_mem, 0)
    else:
        keep_freed_buffers()
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(cpu_threads)
        if enable_mkldnn:
            config.enable_mkldnn()
            if precision == "bf16":
                config.enable_mkldnn_bfloat16()
        else:
            config.disable_mkldnn()  # on by default in Paddle 3: must be turned off explicitly
    config.switch_ir_optim(ir_optim)
    config.switch_use_feed_fetch_ops(False)  # zero-copy input/output handles
    if prog.endswith(".pdmodel"):
        config.enable_memory_optim()
    if enable_profile:
        config.enable_profile()
    config.disable_glog_info()
    return inference.create_predictor(config)


class PaddleRuntime(Runtime):
    @classmethod
    def config_options(cls, g):
        """Paddle Inference's own Global keys (bf16_f32_layers only to refuse it with a reason)."""
        return {"enable_mkldnn": bool(g.get("enable_mkldnn", True)), "ir_optim": bool(g.get("ir_optim", True)),
                "gpu_mem": int(g.get("gpu_mem", 8000)), "enable_profile": bool(g.get("enable_profile", False)),
                "bf16_f32_layers": g.get("bf16_f32_layers")}

    def __init__(self, model_dir, use_gpu=False, cpu_threads=2, precision="fp32", enable_mkldnn=True,
                 ir_optim=True, gpu_mem=8000, enable_profile=False, bf16_f32_layers=None):
        self.predictor = create_predictor(model_dir, use_gpu, enable_mkldnn, cpu_threads, precision, ir_optim,
                                          gpu_mem, enable_profile, bf16_f32_layers)
        self.input_names = list(self.predictor.get_input_names())
        self.output_names = list(self.predictor.get_output_names())
        self._inputs = {n: self.predictor.get_input_handle(n) for n in self.input_names}
        self._outputs = {n: self.predictor.get_output_handle(n) for n in self.output_names}

    def run(self, inputs):
        for name, value in inputs.items():
            handle = self._inputs[name]
            handle.reshape(list(value.shape))
            handle.copy_from_cpu(value)
        self.predictor.run()
        return {n: h.copy_to_cpu() for n, h in self._outputs.items()}
