"""Text -> token ids for a text encoder, through the `tokenizers` library (no hand-written tokenizer).

Two kinds, as inference.yml's `text.tokenizer.kind` says:
  bpe        a Hugging Face tokenizer.json: CLIP's byte-level BPE (OpenCLIP, HF CLIP) or any tokenizer.json
  wordpiece  a BERT WordPiece vocab.txt (Chinese-CLIP: Chinese characters one token each, lower-cased)

    tok = TextTokenizer.from_spec(model_dir, spec["text"]["tokenizer"])
    out = tok.encode(["a red car", "红色的汽车"])   # Tokens: ids, mask int64 [N, L]; truncated; counts

Every query becomes [sot] + its tokens + [eot], padded with `pad_id` to `context_length` (CLIP: 77,
Chinese-CLIP: 52); a longer query keeps its first context_length - 2 tokens and is flagged `truncated`
(the caller says so). An empty query (nothing but spaces) is refused (TextQueryError naming it).
"""
import os
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, PPShiTuError

KINDS = ("bpe", "wordpiece")
# the special tokens each kind is looked up by, first found wins (--sot-token etc. name others)
SPECIAL = {"bpe": {"sot": ("<|startoftext|>", "<s>", "<bos>", "[CLS]"), "eot": ("<|endoftext|>", "</s>", "<eos>", "[SEP]"),
                   "pad": ("<|pad|>", "<pad>", "[PAD]")},
           "wordpiece": {"sot": ("[CLS]",), "eot": ("[SEP]",), "pad": ("[PAD]",)}}
MAX_TOKENIZER_BYTES = 64 << 20  # CLIP's tokenizer.json is ~3.5 MB, a BERT vocab.txt ~0.1-0.3 MB
MAX_QUERY_CHARS = 2000  # a query is a sentence: text past this is cut before tokenising (and said)


class TextQueryError(PPShiTuError, ValueError):
    """A text query that cannot be searched (empty)."""


@dataclass
class Tokens:
    ids: np.ndarray          # int64 [N, L]
    mask: np.ndarray         # int64 [N, L]: 1 on the query's tokens (sot and eot included), 0 on padding
    truncated: list          # per query: its tokens did not all fit in the context length
    counts: list             # per query: its tokens before truncation (sot/eot not counted)


def load_tokenizer(kind, path, lowercase=True):
    """The `tokenizers` object of a tokenizer.json (bpe) or vocab.txt (wordpiece); ConfigError naming the file."""
    from ..utils.files import read_input_text

    if kind not in KINDS:
        raise ConfigError(f"tokenizer kind must be one of {list(KINDS)}, got {kind!r}")
    try:
        text = read_input_text(path, "tokenizer file", MAX_TOKENIZER_BYTES, ConfigError)  # regular files only
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: a tokenizer file is UTF-8 text; this is not ({e.reason} at byte {e.start})") from None
    try:
        if kind == "bpe":
            from tokenizers import Tokenizer

            return Tokenizer.from_str(text)
        from tokenizers.implementations import BertWordPieceTokenizer

        vocab = {}
        for i, line in enumerate(text.split("\n")):  # one token a line, its id the line number (BERT's vocab.txt)
            if line.rstrip("\r"):
                vocab.setdefault(line.rstrip("\r"), i)
        if not vocab:
            raise ValueError("no tokens in it")
        return BertWordPieceTokenizer(vocab, lowercase=bool(lowercase), handle_chinese_chars=True)
    except Exception as e:  # noqa: BLE001 - the library's own errors (its Exception type for a bad file)
        hint = "a tokenizer.json (Hugging Face tokenizers)" if kind == "bpe" else "a WordPiece vocab.txt (one token a line)"
        raise ConfigError(f"{path}: not {hint} ({type(e).__name__}: {str(e)[:200]})") from None


def special_ids(tokenizer, kind, path, names=None):
    """{"sot", "eot", "pad"} ids of the tokenizer's special tokens (`names` overrides the tokens looked up);
    a missing start or end token is a ConfigError naming the file; no pad token pads with 0."""
    found = {}
    for role, candidates in SPECIAL[kind].items():
        wanted = ((names or {}).get(role),) if (names or {}).get(role) else candidates
        ids = [tokenizer.token_to_id(t) for t in wanted]
        hit = next((i for i in ids if i is not None), None)
        if hit is None and role != "pad":
            raise ConfigError(f"{path}: no {role} token ({' / '.join(wanted)}) in this tokenizer's vocabulary; "
                              f"name it with --{role}-token")
        found[role] = int(hit) if hit is not None else 0
    return found


class TextTokenizer:
    def __init__(self, tokenizer, kind, context_length, sot_id, eot_id, pad_id=0, where="tokenizer"):
        if int(context_length) < 3:
            raise ConfigError(f"{where}: context_length must be at least 3 (start, one token, end), got {context_length}")
        self.tokenizer, self.kind, self.where = tokenizer, kind, where
        self.context_length = int(context_length)
        self.sot_id, self.eot_id, self.pad_id = int(sot_id), int(eot_id), int(pad_id)

    @classmethod
    def from_spec(cls, model_dir, spec):
        """From inference.yml's text.tokenizer section (kind, file, context_length, sot/eot/pad ids)."""
        path = os.path.join(model_dir, str(spec["file"]))
        return cls(load_tokenizer(spec["kind"], path, spec.get("lowercase", True)), spec["kind"],
                   spec["context_length"], spec["sot_id"], spec["eot_id"], spec.get("pad_id", 0), where=path)

    @property
    def vocab_size(self):
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    def token_ids(self, text):
        """The query's own token ids (no special tokens); TextQueryError for an empty query."""
        if not isinstance(text, str) or not text.strip():
            raise TextQueryError(f"empty text query {text!r}: give words to search for")
        ids = self.tokenizer.encode(text[:MAX_QUERY_CHARS], add_special_tokens=False).ids
        if not ids:
            raise TextQueryError(f"text query {text!r}: the tokenizer makes no tokens of it")
        return ids

    def encode(self, texts):
        """Tokens of `texts` (a string or a list of them)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        n, room = len(texts), self.context_length - 2
        ids = np.full((n, self.context_length), self.pad_id, np.int64)
        mask = np.zeros((n, self.context_length), np.int64)
        truncated, counts = [], []
        for row, text in enumerate(texts):
            own = self.token_ids(text)
            counts.append(len(own))
            truncated.append(len(own) > room or len(text) > MAX_QUERY_CHARS)
            seq = [self.sot_id] + own[:room] + [self.eot_id]
            ids[row, :len(seq)] = seq
            mask[row, :len(seq)] = 1
        return Tokens(ids, mask, truncated, counts)
