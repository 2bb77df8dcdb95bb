"""Recognition model: paddleclas backbones (via the adapter), necks, heads, losses, RecModel."""
