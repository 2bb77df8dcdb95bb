"""Recognition data: PaddleClas list files, transforms, the P×K identity sampler, loaders."""
