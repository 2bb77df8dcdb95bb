"""Recognition: backbones (EfficientNet-Lite, PaddleClas's families; registered in engine/backbones.py), pooling,
necks, heads, losses, the RecModel, its data (list files, transforms, P×K sampler), task (train / eval / export),
export and metrics."""
