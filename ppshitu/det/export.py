"""Export a PicoDetModel as a PaddleDetection-style inference directory (see
docs/ARCHITECTURE.md): inputs image / im_shape / scale_factor, outputs bbox [M, 6]
+ bbox_num [N] with NMS inside, plus inference.yml for ppshitu.infer.DetPredictor.

`openvino_ir=True` also writes the OpenVINO IR (inference.xml/.bin) beside the Paddle files and names it
in inference.yml (`openvino_model`), so `Global.inference_backend: openvino` loads it without converting
the PIR program at first use (ppshitu/infer/openvino_runtime.py)."""
import os

import paddle

from ..infer.spec import write_spec
from ..paddle_import import spend_pir_out_warning


def export_detector(model, out_dir, preprocess, label_list, export_format="pir", openvino_ir=False):
    """Trace `model` at `preprocess.input_size` (batch size free) and save it to `out_dir`."""
    if export_format != "pir":
        # Paddle 3.3's legacy exporter rejects LCNet's SE block and PicoHead (multiply/sigmoid
        # "must be Value, but got Variable"); see shared/PADDLE3_NOTES.md.
        from ..errors import ConfigError
        raise ConfigError(f"Global.export_format: the detector exports as 'pir' only, got {export_format!r}")
    h, w = preprocess.input_size
    model.eval()
    specs = [paddle.static.InputSpec([None, 3, h, w], "float32", "image"),
             paddle.static.InputSpec([None, 2], "float32", "im_shape"),
             paddle.static.InputSpec([None, 2], "float32", "scale_factor")]
    spend_pir_out_warning()
    static = paddle.jit.to_static(model, input_spec=specs, full_graph=True)
    os.makedirs(out_dir, exist_ok=True)
    paddle.jit.save(static, os.path.join(out_dir, "inference"))
    spec = write_spec(out_dir, model_type="det", label_list=list(label_list), format="pir", **preprocess.spec())
    if openvino_ir:
        from ..infer.openvino_runtime import write_ir
        from ..infer.spec import read_spec

        write_ir(out_dir)
        spec = read_spec(out_dir)
    return spec
