"""GPT-2's byte-level BPE tokenizer, from its published vocabulary and merges (no extra package).

Upstream's LM data is GPT-2-tokenized (vocabulary 50,257, ``<|endoftext|>`` = 50,256). The
algorithm (OpenAI's GPT-2 encoder, also Hugging Face's ``ByteLevel`` BPE):

1. Split the text into pieces with GPT-2's pattern: contractions ('s 't 're 've 'm 'll 'd),
   an optional space plus letters, an optional space plus digits, an optional space plus
   other non-space characters, and runs of whitespace (a run before a non-space keeps its
   last space for the next piece).
2. Map each UTF-8 byte of a piece to a printable stand-in character: the bytes of
   '!'..'~', '¡'..'¬' and '®'..'ÿ' map to the character with that code, the other 68
   bytes, in increasing order, to U+0100, U+0101, ... (so a space becomes 'Ġ').
3. Repeatedly join the adjacent pair of symbols with the lowest merge rank (every
   occurrence of that pair, left to right) until no adjacent pair has a rank.
4. Look the symbols up in the vocabulary.

Files: Hugging Face's ``tokenizer.json`` (``model.vocab``, ``model.merges`` as "a b"
strings or [a, b] pairs, ``added_tokens``), or a folder with ``vocab.json`` + ``merges.txt``
(Hugging Face's names) or ``encoder.json`` + ``vocab.bpe`` (GPT-2's own release: the same
two files).
"""

from __future__ import annotations

import json
from pathlib import Path

from algoperf import spec

EOT = "<|endoftext|>"
PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def byte_symbols() -> list[str]:
    """The stand-in character of each byte value 0..255 (step 2 above)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols, extra = {}, 0
    for b in range(256):
        if b in printable:
            symbols[b] = chr(b)
        else:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


class ByteLevelBPE:
    """Text -> GPT-2 token ids; ``eot_id`` is the id of ``<|endoftext|>`` (None if absent)."""

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
        try:
            import regex  # \p{L} / \p{N} classes; installed with sacrebleu
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ValueError("tokenizing text needs the `regex` package: pip install regex") from e
        self.vocab = vocab
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.eot_id = vocab.get(EOT)
        self.vocab_size = max(vocab.values()) + 1
        self._pattern = regex.compile(PATTERN)
        self._bytes = byte_symbols()
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def load(cls, path: str | Path) -> ByteLevelBPE:
        """From ``tokenizer.json`` or a folder with ``vocab.json`` + ``merges.txt`` (or
        GPT-2's ``encoder.json`` + ``vocab.bpe``)."""
        path = Path(path)
        try:
            if path.is_dir():
                names = ("encoder.json", "vocab.bpe") if (path / "encoder.json").is_file() else ("vocab.json", "merges.txt")
                vocab = json.loads((path / names[0]).read_text(encoding="utf-8"))
                lines = (path / names[1]).read_text(encoding="utf-8").splitlines()
                merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]
            else:
                spec_ = json.loads(path.read_text(encoding="utf-8"))
                model = spec_["model"]
                if model.get("type", "BPE") != "BPE":
                    raise ValueError(f"{path}: model type {model.get('type')!r} is not BPE")
                vocab = dict(model["vocab"])
                for token in spec_.get("added_tokens", []):
                    vocab.setdefault(token["content"], token["id"])
                merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        except FileNotFoundError as e:
            raise spec.DataNotFoundError(
                f"no tokenizer at {e.filename}: pass GPT-2's tokenizer.json (or a folder with vocab.json "
                "and merges.txt, or GPT-2's encoder.json and vocab.bpe), e.g. from "
                "https://huggingface.co/openai-community/gpt2"
            ) from e
        except (KeyError, TypeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path} is not a BPE tokenizer.json / vocab.json + merges.txt ({e!r})") from e
        if any(len(m) != 2 for m in merges):
            raise ValueError(f"{path}: every merge must name two symbols")
        return cls(vocab, merges)

    def _piece(self, piece: str) -> list[int]:
        symbols = [self._bytes[b] for b in piece.encode("utf-8")]
        while len(symbols) > 1:
            pairs = {(a, b) for a, b in zip(symbols, symbols[1:], strict=False)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        try:
            return [self.vocab[s] for s in symbols]
        except KeyError as e:
            raise ValueError(f"the tokenizer's vocabulary lacks the symbol {e.args[0]!r}") from e

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no end-of-text token added)."""
        ids: list[int] = []
        for piece in self._pattern.findall(text):
            cached = self._cache.get(piece)
            if cached is None:
                cached = self._piece(piece)
                if len(self._cache) < 1 << 20:  # bounded: a corpus has a long tail of words
                    self._cache[piece] = cached
            ids.extend(cached)
        return ids
