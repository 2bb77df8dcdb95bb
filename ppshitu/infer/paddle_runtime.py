"""Paddle Inference behind the runtime interface.

A model directory holds `inference.json` (Paddle 3 PIR) or `inference.pdmodel` (the pre-3.0 format
PP-ShiTu's published models use) with `inference.pdiparams`. oneDNN is on by default on CPU (4-6x faster
here; Paddle 3 turns it on by itself, so off must be asked for); zero-copy handles; legacy programs get
the memory-optimisation pass PaddleClas uses (Paddle 3.3 refuses it for PIR).
"""
from ..errors import ConfigError
from .runtime import RUNTIMES, Runtime, model_files


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
    if prog.endswith(".xml"):
        raise ConfigError(f"{model_dir}: holds an OpenVINO model only ({prog}); run it with "
                          f"Global.inference_backend: openvino")
    config = inference.Config(prog, params)
    if use_gpu:
        config.enable_use_gpu(gpu_mem, 0)
    else:
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


@RUNTIMES.register("paddle")
class PaddleRuntime(Runtime):
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
