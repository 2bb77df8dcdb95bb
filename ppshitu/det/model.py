"""PicoDet as one layer with two entry points: `losses(batch, epoch)` for training and
`forward(image, im_shape, scale_factor)` for evaluation and export, which returns
PaddleDetection's `bbox [M, 6]` + `bbox_num [N]` with NMS inside. Evaluation and the
exported program run this same forward, so they cannot drift apart."""
import paddle

from ..config import Field, validate
from ..engine.backbones import BACKBONES
from ..errors import ConfigError

NMS_SCHEMA = {
    "score_threshold": Field((int, float), 0.025, min_value=0, max_value=1),
    "nms_threshold": Field((int, float), 0.6, min_value=0, max_value=1),
    "nms_top_k": Field(int, 1000, min_value=1),
    "keep_top_k": Field(int, 100, min_value=1),
}
# Arch keys that are not ppdet parts.
ARCH_KEYS = ("name", "class_num", "backbone", "neck", "head", "nms", "pretrained")


class PicoDetModel(paddle.nn.Layer):
    def __init__(self, backbone, neck, head, nms=None):
        super().__init__()
        self.backbone, self.neck, self.head = backbone, neck, head
        self.nms = validate(nms or {}, NMS_SCHEMA, source="config", path="Arch.nms")
        self.num_classes = head.num_classes

    def features(self, image):
        return self.neck(self.backbone({"image": image}))

    def forward(self, image, im_shape, scale_factor):
        """bbox [M, 6] `[class, score, x1, y1, x2, y2]` in original pixels, bbox_num [N].
        Boxes are clipped to the original image (im_shape / scale_factor) before NMS."""
        scores, boxes = self.head(self.features(image), export_post_process=True)
        sy, sx = paddle.split(scale_factor, 2, axis=-1)
        boxes = boxes / paddle.concat([sx, sy, sx, sy], axis=-1).reshape([-1, 1, 4])
        h, w = paddle.split(im_shape / scale_factor, 2, axis=-1)
        size = paddle.concat([w, h, w, h], axis=-1).reshape([-1, 1, 4])
        boxes = paddle.maximum(paddle.minimum(boxes, size), paddle.zeros_like(size))
        # ppdet's MultiClassNMS cannot be traced under PIR; the raw op can.
        bbox, _, bbox_num = paddle._C_ops.multiclass_nms3(
            boxes, scores, None, float(self.nms["score_threshold"]), self.nms["nms_top_k"],
            self.nms["keep_top_k"], float(self.nms["nms_threshold"]), False, 1.0, -1)
        return bbox, bbox_num

    def losses(self, batch, epoch):
        """{'loss_vfl', 'loss_bbox', 'loss_dfl', 'loss'} for a collated batch (see det.data)."""
        head_outs = self.head(self.features(batch["image"]))
        meta = {"gt_class": batch["gt_class"], "gt_bbox": batch["gt_bbox"], "pad_gt_mask": batch["pad_gt_mask"],
                "im_id": batch["im_id"], "epoch_id": epoch}
        losses = dict(self.head.get_loss(head_outs, meta))
        losses["loss"] = paddle.add_n([v.reshape([]) for v in losses.values()])
        return losses


def backbone_class(name, where):
    """A detection backbone's class from the one backbone registry (ppshitu/engine/backbones.py)."""
    return BACKBONES.get(name, where, task="det").factory


def build_model(arch, where="Arch"):
    """A PicoDetModel from the Arch section: {name: PicoDet, class_num, backbone, neck, head, nms}."""
    from .paddledet_adapter import build_parts  # the only ppdet import, deferred for light CLIs

    for key in arch:
        if key not in ARCH_KEYS:
            from ..errors import did_you_mean
            raise ConfigError(f"{where}: unknown key '{key}'{did_you_mean(key, ARCH_KEYS, where + '.')}; "
                              f"valid keys: {', '.join(ARCH_KEYS)}")
    num_classes = arch.get("class_num", 1)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"{where}.class_num: must be a positive integer, got {num_classes!r}")
    backbone, neck, head = build_parts(arch, num_classes, backbone_class, where)
    return PicoDetModel(backbone, neck, head, arch.get("nms"))
