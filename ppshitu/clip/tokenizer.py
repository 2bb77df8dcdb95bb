"""The small text-image model's tokenizer: a byte-level BPE (CLIP's kind) learnt from the training captions with
the `tokenizers` library and saved as a Hugging Face tokenizer.json. Training tokenizes through the same
TextTokenizer the search path uses (ppshitu/infer/text_tokenizer.py: [sot] + tokens + [eot], padded), so the
ids a query gets after `tools/import_model.py` are the ids the model learnt from.

    build_bpe_tokenizer(captions, vocab_size=600).save("tokenizer.json")
    tok = text_tokenizer("tokenizer.json", context_length=16)
    ids = tok.encode(["a teal shaded heptagon"]).ids            # int64 [N, 16]

Special tokens: PAD 0 (the text tower masks it itself, so `input_ids` is its only input), BOS 1, EOS 2.
"""
from ..errors import ConfigError
from ..infer.text_tokenizer import TextTokenizer, load_tokenizer, special_ids

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
SPECIAL_TOKENS = (PAD, BOS, EOS)
PAD_ID = 0


def build_bpe_tokenizer(texts, vocab_size):
    """A lower-casing byte-level BPE learnt from `texts` (ids 0-2: PAD, BOS, EOS)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer)
    return tok


def text_tokenizer(path, context_length):
    """The TextTokenizer of a tokenizer.json written by `build_bpe_tokenizer` (ConfigError naming a bad file)."""
    tok = load_tokenizer("bpe", str(path))
    ids = special_ids(tok, "bpe", path)
    if ids["pad"] != PAD_ID:
        raise ConfigError(f"{path}: the text tower masks padding id {PAD_ID}, but this tokenizer pads with "
                          f"{ids['pad']}")
    return TextTokenizer(tok, "bpe", context_length, ids["sot"], ids["eot"], ids["pad"], where=str(path))

