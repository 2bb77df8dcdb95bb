"""The small text-image model (Arch.name ClipModel, configs/clip/): captions -> tokenizer, two towers, the
contrastive loss, training/evaluation (task.py) and the ONNX export tools/import_model.py reads."""
