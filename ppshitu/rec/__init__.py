"""Recognition: backbones (registry + pretrained configs), pooling, necks, heads, losses, the RecModel,
its data (list files, transforms, P×K sampler), task (train / eval / export), export and metrics."""
