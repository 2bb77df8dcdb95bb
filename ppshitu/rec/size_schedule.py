"""Global.image_size_schedule: train the first epochs on smaller images (progressive resizing), then at the
training transform's own size. Evaluation and export always use Global.image_shape.

    Global: {image_size_schedule: [[1, 128]]}     # epoch 1 at 128 px, the rest at RandCropImage's size
    Global: {image_size_schedule: [[2, 112], [1, 128]]}   # epochs 1-2 at 112, epoch 3 at 128, then the size

The size a schedule sets is that of the training pipeline's last op that fixes the output size
(RandCropImage, CropImage, or ResizeImage with `size`); it changes before an epoch starts, so the data
loader's workers (started per epoch) see it too.
"""
import logging

from ..engine.hooks import HookBase
from ..errors import ConfigError
from .data.transforms import CropImage, RandCropImage, ResizeImage

log = logging.getLogger("ppshitu.train")
WHERE = "Global.image_size_schedule"


def size_op(transform, where="DataLoader.Train.dataset.transform_ops"):
    """The last op of `transform` (a Compose) that fixes the output size."""
    ops = [op for op in transform.ops if isinstance(op, (RandCropImage, CropImage))
           or (isinstance(op, ResizeImage) and op.size is not None)]
    if not ops:
        raise ConfigError(f"{WHERE} needs a training pipeline whose output size is fixed by RandCropImage, CropImage "
                          f"or ResizeImage {{size}}; {where} has none")
    return ops[-1]


def output_size(op):
    """(w, h) an op resizes or crops to."""
    return tuple(op.size) if isinstance(op, ResizeImage) else (op.w, op.h)


def set_output_size(op, wh):
    if isinstance(op, ResizeImage):
        op.size = tuple(wh)
    else:
        op.w, op.h = wh


def size_at(schedule, epoch, default):
    """The (w, h) of 1-based `epoch`: the schedule's [epochs, size] pairs in order, then `default`."""
    end = 0
    for epochs, size in schedule or ():
        end += epochs
        if epoch <= end:
            return (size, size)
    return tuple(default)


class SizeScheduleHook(HookBase):
    """Sets the training pipeline's output size before each epoch from the schedule."""

    def __init__(self, schedule, transform, epochs):
        self.schedule, self.op = schedule, size_op(transform)
        self.default = output_size(self.op)
        covered = sum(e for e, _ in schedule)
        if covered >= epochs:
            log.warning("%s covers %d epoch(s) of %d: training never reaches the pipeline's own size %s", WHERE,
                        covered, epochs, self.default)

    def before_epoch(self, trainer):
        wh = size_at(self.schedule, trainer.epoch + 1, self.default)
        if wh != output_size(self.op):
            log.info("epoch %d: training at %dx%d px (%s)", trainer.epoch + 1, wh[0], wh[1], WHERE)
        set_output_size(self.op, wh)
