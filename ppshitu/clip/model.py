"""A small two-tower text-image model (CLIP's layout) from the `Arch` section of a configs/clip recipe:

    Arch:
      name: ClipModel
      embedding_size: 128                       # D, shared by both towers
      ImageTower: {Backbone: {name: EfficientNetLite0, pretrained: True, lr_mult: 0}, hidden: 512}
      TextTower: {tokenizer: ./data/clip/tokenizer.json, context_length: 16, width: 128, layers: 2, heads: 4}

Image tower: a registered backbone (ImageNet weights; `lr_mult: 0` freezes it, and then training feeds its
pooled features, computed once) -> MLP -> D. Text tower: token + position embeddings -> pre-LN transformer
encoder layers -> mean over the non-PAD tokens (the mask comes from the ids, so `input_ids` is the only input)
-> linear -> D. Both outputs are L2-normalized.
"""
import paddle
from paddle import nn

from ..config import Field
from ..engine import backbones
from ..errors import ConfigError
from ..registry import split_spec
from ..rec.heads import l2_normalize_exportable
from .tokenizer import PAD_ID, text_tokenizer

_ARCH_KEYS = ("name", "embedding_size", "ImageTower", "TextTower")
_TEXT_SCHEMA = {"tokenizer": Field(str), "context_length": Field(int, min_value=3, max_value=512),
                "width": Field(int, min_value=16, max_value=2048),
                "layers": Field(int, min_value=1, max_value=24), "heads": Field(int, min_value=1, max_value=32)}
_IMAGE_SCHEMA = {"Backbone": Field(dict), "hidden": Field((int, type(None)), min_value=1, max_value=16384)}


class ImageTower(nn.Layer):
    def __init__(self, backbone, feature_width, embedding_size, hidden=512, frozen=True):
        super().__init__()
        self.backbone, self.frozen = backbone, frozen
        self.proj = nn.Sequential(nn.Linear(feature_width, hidden), nn.GELU(), nn.Linear(hidden, embedding_size)) \
            if hidden else nn.Linear(feature_width, embedding_size)

    def features(self, x):
        """The backbone's pooled features [N, C] (BatchNorm statistics stay ImageNet's when frozen)."""
        if self.frozen:
            self.backbone.eval()
        return paddle.flatten(self.backbone(x), 1)

    def project(self, feats):
        return l2_normalize_exportable(self.proj(feats))

    def forward(self, x):
        return self.project(self.features(x))


class TextTower(nn.Layer):
    def __init__(self, vocab_size, context_length, embedding_size, width=128, layers=2, heads=4):
        super().__init__()
        if width % heads:
            raise ConfigError(f"Arch.TextTower: width {width} must be a multiple of heads {heads}")
        self.context_length = context_length
        self.token = nn.Embedding(vocab_size, width)
        self.position = self.create_parameter([1, context_length, width],
                                              default_initializer=nn.initializer.Normal(std=0.01))
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, activation="gelu",
                                           normalize_before=True)
        self.encoder = nn.TransformerEncoder(layer, layers)
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, embedding_size)

    def forward(self, input_ids):
        keep = paddle.cast(input_ids != PAD_ID, "float32")                       # [N, L]
        x = self.token(input_ids) + self.position
        bias = paddle.unsqueeze((keep - 1.0) * 1e4, [1, 2])                       # [N, 1, 1, L]: PAD unseen
        x = self.norm(self.encoder(x, bias))
        pooled = paddle.sum(x * keep.unsqueeze(-1), 1) / paddle.clip(paddle.sum(keep, 1, keepdim=True), min=1.0)
        return l2_normalize_exportable(self.proj(pooled))


class ClipModel(nn.Layer):
    def __init__(self, image_tower, text_tower):
        super().__init__()
        self.image, self.text = image_tower, text_tower

    def forward(self, image=None, input_ids=None, features=None):
        """{"image": [N, D], "text": [N, D]}; `features` (the frozen backbone's) replaces `image`."""
        img = self.image.project(features) if features is not None else self.image(image)
        return {"image": img, "text": self.text(input_ids)}


def _checked(section, schema, where):
    if not isinstance(section, dict):
        raise ConfigError(f"{where} must be a mapping, got {section!r}")
    unknown = sorted(set(section) - set(schema))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; valid: {', '.join(schema)}")
    return {k: schema[k].check(v, f"{where}.{k}", "config") for k, v in section.items()}


def _image_tower(spec, embedding_size, image_shape):
    spec = _checked(spec, _IMAGE_SCHEMA, "Arch.ImageTower")
    if "Backbone" not in spec:
        raise ConfigError("Arch.ImageTower.Backbone is required, e.g. {name: EfficientNetLite0, pretrained: True}")
    name, kwargs = split_spec(spec["Backbone"], "Arch.ImageTower.Backbone")
    kwargs = dict(kwargs)
    weights, lr_mult = kwargs.pop("pretrained", False), kwargs.pop("lr_mult", 0.0)
    if not isinstance(lr_mult, (int, float)) or isinstance(lr_mult, bool) or lr_mult < 0:
        raise ConfigError(f"Arch.ImageTower.Backbone.lr_mult must be a number >= 0, got {lr_mult!r}")
    backbone = backbones.create_backbone(name, "Arch.ImageTower.Backbone", **kwargs)
    if weights:
        backbones.load_pretrained(backbone, name, weights, "Arch.ImageTower.Backbone.pretrained")
    for p in backbone.parameters():
        p.optimize_attr["learning_rate"] = float(lr_mult)
        p.stop_gradient = lr_mult == 0
    backbone.eval()
    with paddle.no_grad():
        width = int(paddle.flatten(backbone(paddle.zeros([1, *image_shape])), 1).shape[1])
    tower = ImageTower(backbone, width, embedding_size, spec.get("hidden", 512), frozen=lr_mult == 0)
    tower.backbone_name, tower.pretrained = name, bool(weights)
    return tower


def build_clip_model(arch, image_shape):
    """ClipModel from the Arch section; also returns the tokenizer (the text tower's vocabulary is its)."""
    if not isinstance(arch, dict):
        raise ConfigError(f"Arch must be a mapping, got {arch!r}")
    unknown = sorted(set(arch) - set(_ARCH_KEYS))
    if unknown:
        raise ConfigError(f"Arch: unknown keys {unknown}; valid: {', '.join(_ARCH_KEYS)}")
    dim = Field(int, min_value=2, max_value=4096).check(arch.get("embedding_size", 128), "Arch.embedding_size", "config")
    text = _checked(arch.get("TextTower") or {}, _TEXT_SCHEMA, "Arch.TextTower")
    if "tokenizer" not in text:
        raise ConfigError("Arch.TextTower.tokenizer: the tokenizer.json the captions were tokenized with is "
                          "required (python dataset/make_synthetic.py captions writes one)")
    tok = text_tokenizer(text.pop("tokenizer"), text.pop("context_length", 16))
    image = _image_tower(arch.get("ImageTower") or {}, dim, image_shape)
    # the embedding table has exactly the tokenizer's rows: tools/import_model.py checks them against it
    model = ClipModel(image, TextTower(tok.vocab_size, tok.context_length, dim, **text))
    model.embedding_size = dim
    return model, tok


def clip_logits(outputs, scale):
    """Image-to-text cosine similarities times `scale` [N, N]."""
    return scale * paddle.matmul(outputs["image"], outputs["text"], transpose_y=True)

