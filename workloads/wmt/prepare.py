"""``algoperf data prepare wmt``: the official WMT17 de-en files into AlgoPerf's TFDS layout.

Reads, from a local folder (plain files anywhere below it, or inside their official
statmt.org archives): the training corpora europarl-v7, commoncrawl, news-commentary-v12
and rapid2016 de-en, and ``dev.tgz``'s newstest2013 and newstest2014 (plain text or SGML).
Writes ``<data_dir>/wmt`` as TFDS's ``wmt17_translate`` / ``wmt14_translate`` de-en
builders and AlgoPerf's setup do (the layout and record format are in ``input_pipeline``'s
docstring), plus the SentencePiece model ``wmt_sentencepiece_model`` trained as AlgoPerf does.

TFDS facts (translate/wmt.py, wmt17.py, wmt14.py at 1.0.0): wmt17_translate de-en 'train'
is these four corpora in this order (the other WMT17 training subsets have no de-en);
wmt14_translate de-en 'validation' is newstest2013 (newsdev2014 is hi-en only) and 'test'
newstest2014 (the full 3,003-sentence set). Each pair's key is "<subset>/0/<line>" (line
counted before dropping pairs with an empty side); text files are split at "\\n" only.
"""

from __future__ import annotations

import itertools
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

from algoperf import spec
from algoperf.data import tfds_writer, tfrecord

from .input_pipeline import VOCAB_FILE, split_files


class _Parallel:
    """One official parallel corpus: TFDS subset name, the German and English file names
    (alternatives in order of preference: TFDS's form first), and where to get them."""

    def __init__(self, subset: str, de: tuple[str, ...], en: tuple[str, ...], url: str) -> None:
        self.subset, self.de, self.en, self.url = subset, de, en, url


TRAIN_CORPORA = (
    _Parallel("europarl_v7", ("europarl-v7.de-en.de",), ("europarl-v7.de-en.en",),
              "http://www.statmt.org/wmt13/training-parallel-europarl-v7.tgz"),
    _Parallel("commoncrawl", ("commoncrawl.de-en.de",), ("commoncrawl.de-en.en",),
              "http://www.statmt.org/wmt13/training-parallel-commoncrawl.tgz"),
    _Parallel("newscommentary_v12", ("news-commentary-v12.de-en.de",), ("news-commentary-v12.de-en.en",),
              "http://data.statmt.org/wmt17/translation-task/training-parallel-nc-v12.tgz"),
    _Parallel("rapid_2016", ("rapid2016.de-en.de",), ("rapid2016.de-en.en",),
              "http://data.statmt.org/wmt18/translation-task/rapid2016.tgz"),
)
VALIDATION_SET = _Parallel(
    "newstest2013", ("newstest2013.de", "newstest2013-src.de.sgm"), ("newstest2013.en", "newstest2013-ref.en.sgm"),
    "http://data.statmt.org/wmt19/translation-task/dev.tgz")
TEST_SET = _Parallel(
    "newstest2014", ("newstest2014-deen-src.de.sgm", "newstest2014.de"), ("newstest2014-deen-ref.en.sgm", "newstest2014.en"),
    "http://data.statmt.org/wmt19/translation-task/dev.tgz")
_SEG = re.compile(rb'<seg id="\d+">(.*)</seg>')  # TFDS's SGML rule: one <seg> per line, text kept raw


def _file_index(source: Path, staging: Path) -> dict[str, Path]:
    """Every file the corpora need, by name: found anywhere under ``source`` or extracted
    (one streaming pass per archive) from the .tgz / .tar.gz / .tar archives there."""
    wanted = {n for c in (*TRAIN_CORPORA, VALIDATION_SET, TEST_SET) for n in (*c.de, *c.en)}
    paths = [p for p in sorted(source.rglob("*")) if p.is_file()]
    found = {p.name: p for p in paths if p.name in wanted}
    archives = [p for p in paths if p.name.endswith((".tgz", ".tar.gz", ".tar"))]
    for archive in archives:
        if wanted <= found.keys():
            break
        try:
            with tarfile.open(archive, "r|*") as tar:
                for member in tar:
                    name = Path(member.name).name
                    if member.isfile() and name in wanted and name not in found:
                        target = staging / name
                        with tar.extractfile(member) as f, open(target, "wb") as out:
                            shutil.copyfileobj(f, out)
                        found[name] = target
        except (tarfile.TarError, OSError, EOFError) as e:
            raise ValueError(f"{archive} is not a readable tar archive ({e}); download it again") from e
    return found


def _lines(path: Path) -> Iterator[bytes]:
    """Sentences of a plain text file (split at newline bytes only, like TFDS's
    ``str.split("\\n")``) or of an SGML file (the ``<seg>`` lines)."""
    with open(path, "rb") as f:
        if path.name.endswith(".sgm"):
            yield from (m.group(1) for line in f if (m := _SEG.match(line)))
        else:
            yield from (line[:-1] if line.endswith(b"\n") else line for line in f)


def _corpus_files(corpus: _Parallel, files: dict[str, Path]) -> tuple[Path, Path]:
    de = next((files[n] for n in corpus.de if n in files), None)
    en = next((files[n] for n in corpus.en if n in files), None)
    if de is None or en is None:
        raise spec.DataNotFoundError(
            f"WMT source files for {corpus.subset} not found (need {corpus.de[0]} and {corpus.en[0]}, "
            f"plain or inside their archive): download {corpus.url} into the --source folder"
        )
    return de, en


def _pairs(corpus: _Parallel, files: dict[str, Path]) -> Iterator[tuple[str, bytes]]:
    """(TFDS key, serialized Example) of each pair of ``corpus`` with both sides non-empty."""
    de, en = _corpus_files(corpus, files)
    for line, (src, tgt) in enumerate(itertools.zip_longest(_lines(de), _lines(en))):
        if src is None or tgt is None:
            longer = de if tgt is None else en
            raise ValueError(f"{de} and {en} do not align: {longer} has more than {line} sentences")
        for text, path in ((src, de), (tgt, en)):
            try:
                text.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}: sentence {line + 1} is not UTF-8 ({e}); is the file corrupt?") from e
        if src and tgt:
            yield f"{corpus.subset}/0/{line}", tfrecord.make_example({"de": [src], "en": [tgt]})


def _train_sentencepiece(root: Path, vocab_size: int, max_corpus_chars: int) -> Path:
    """AlgoPerf's tokenizer: the stored-order train split, German then English line of each
    pair, until ``max_corpus_chars`` bytes are written (checked per pair); a SentencePiece
    unigram model with ``vocab_size`` pieces and character coverage 1.0, defaults otherwise."""
    import sentencepiece

    target = root / VOCAB_FILE
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        corpus = Path(tmp) / "corpus.txt"
        written = 0
        with open(corpus, "wb") as out:
            for example in tfrecord.read_examples(split_files(str(root), "train")):
                if written >= max_corpus_chars:
                    break
                for key in ("de", "en"):
                    line = example[key][0] + b"\n"
                    written += len(line)
                    out.write(line)
        try:
            sentencepiece.SentencePieceTrainer.train(
                input=str(corpus), model_prefix=str(Path(tmp) / "sp"), vocab_size=vocab_size,
                character_coverage=1.0, model_type="unigram", minloglevel=1,
            )
        except RuntimeError as e:
            raise ValueError(f"SentencePiece training failed ({e}); a smaller --option vocab_size=... may fit") from e
        shutil.move(Path(tmp) / "sp.model", target)
    return target


def prepare(data_dir: str | Path, source: str | Path | None = None, **options: str) -> Path:
    """Write ``<data_dir>/wmt`` (``input_pipeline``'s layout) from the official WMT17 de-en files.

    ``source``: a folder holding, plain (anywhere below it) or inside their official
    archives, europarl-v7, commoncrawl, news-commentary-v12 and rapid2016 de-en, and
    ``dev.tgz``'s newstest2013 (plain text or SGML) and newstest2014 (SGML or plain text).
    Records are ordered and sharded as TFDS stores them (``tfds_writer``). Unless
    ``wmt_sentencepiece_model`` already exists there (kept: reuse AlgoPerf's for parity),
    one is trained as AlgoPerf's setup does. Options: ``vocab_size`` (32000),
    ``max_corpus_chars`` (10,000,000).
    """
    unknown = set(options) - {"vocab_size", "max_corpus_chars"}
    if unknown:
        raise ValueError(f"unknown wmt option(s) {sorted(unknown)}; known: vocab_size, max_corpus_chars")
    try:
        vocab_size = int(options.get("vocab_size", 32_000))
        max_corpus_chars = int(options.get("max_corpus_chars", 10**7))
    except ValueError as e:
        raise ValueError(f"wmt options vocab_size and max_corpus_chars take integers ({e})") from e
    if source is None:
        urls = ", ".join(sorted({c.url for c in (*TRAIN_CORPORA, VALIDATION_SET)}))
        raise spec.DataNotFoundError(
            f"algoperf data prepare wmt needs --source: a folder with the WMT17 de-en files ({urls})"
        )
    source = Path(source)
    if not source.is_dir():
        raise spec.DataNotFoundError(f"--source {source} is not a folder (put the WMT archives or files in one)")
    root = Path(data_dir) / "wmt"
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as staging:
        files = _file_index(source, Path(staging))
        for corpus in (*TRAIN_CORPORA, VALIDATION_SET, TEST_SET):
            _corpus_files(corpus, files)  # all present? fail now, not after an hour of writing
        v17 = root / "wmt17_translate" / "de-en" / "1.0.0"
        v14 = root / "wmt14_translate" / "de-en" / "1.0.0"
        train = (pair for corpus in TRAIN_CORPORA for pair in _pairs(corpus, files))
        tfds_writer.write_split(v17, "wmt17_translate", "train", train)
        tfds_writer.write_split(v14, "wmt14_translate", "validation", _pairs(VALIDATION_SET, files))
        tfds_writer.write_split(v14, "wmt14_translate", "test", _pairs(TEST_SET, files))
    if not (root / VOCAB_FILE).is_file():
        _train_sentencepiece(root, vocab_size, max_corpus_chars)
    return root
