"""``algoperf data prepare criteo1tb``: the official Criteo 1TB day files into AlgoPerf's layout.

Reads the 24 click-log files ``day_0`` .. ``day_23`` of Criteo AI Lab's "Criteo 1TB Click
Logs" (gzipped as downloaded, or plain) from a local folder; there is no direct public
download. Writes ``<data_dir>/criteo1tb/day_{d}_{NN}``: each day cut into files of
5,000,000 lines, as AlgoPerf's ``split -a 2 -d -l 5000000`` does (the line format and
the splits are in ``input_pipeline``'s docstring).
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import IO

import numpy as np

from algoperf.spec import DataNotFoundError

from .input_pipeline import NUM_DAY_23_FILES, NUM_DAYS, PIECE_PATTERN, SETUP_HINT, open_maybe_gz

LINES_PER_FILE = 5_000_000


def _day_source(source: Path, day: int) -> Path:
    for name in (f"day_{day}.gz", f"day_{day}", f"day_{day}.csv", f"day_{day}.csv.gz"):
        if (source / name).is_file():
            return source / name
    raise DataNotFoundError(
        f"{source} has no day_{day} or day_{day}.gz: the Criteo 1TB click logs are 24 files "
        f"day_0 ... day_23 (gzipped as downloaded, or plain). {SETUP_HINT}"
    )


def split_day(src: Path, out_dir: Path, day: int, lines_per_file: int = LINES_PER_FILE) -> int:
    """Cut one day file (plain or .gz) into ``day_{day}_{NN}`` of ``lines_per_file`` lines.

    Streams 16 MiB blocks (the cut points are found with numpy); each piece is written
    as ``.part`` and renamed when complete. Returns the number of pieces.
    """
    for stale in out_dir.glob(f"day_{day}_*"):
        if PIECE_PATTERN.match(stale.name) or stale.name.endswith(".part"):
            stale.unlink()
    pieces, left = 0, 0
    out: IO[bytes] | None = None
    last = b"\n"

    def close() -> None:
        nonlocal out, pieces
        assert out is not None
        if last != b"\n":
            out.write(b"\n")  # a final line without its newline
        out.close()
        part = out_dir / f"day_{day}_{pieces:02d}.part"
        part.replace(out_dir / f"day_{day}_{pieces:02d}")
        out, pieces = None, pieces + 1

    try:
        with open_maybe_gz(src) as f:
            while block := f.read(1 << 24):
                while block:
                    if out is None:
                        out, left = open(out_dir / f"day_{day}_{pieces:02d}.part", "wb"), lines_per_file
                    newlines = np.flatnonzero(np.frombuffer(block, np.uint8) == 10)
                    if newlines.size < left:
                        out.write(block)
                        left -= newlines.size
                        last, block = block[-1:], b""
                    else:
                        cut = int(newlines[left - 1]) + 1
                        out.write(block[:cut])
                        last, block = b"\n", block[cut:]
                        close()
        if out is not None:
            close()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise ValueError(f"reading {src} failed ({e}): re-download it (a Criteo day file, plain or .gz)") from e
    return pieces


def prepare(data_dir: str | Path, source: str | Path | None = None, **options: str) -> Path:
    """Cut the official day files into AlgoPerf's layout ``<data_dir>/criteo1tb/day_{d}_{NN}``.

    ``source``: a folder with ``day_0`` ... ``day_23`` (``.gz`` as downloaded, or plain).
    Option ``lines_per_file`` (default 5,000,000, AlgoPerf's ``split -l``). Day 23 must
    give 36 pieces (test = the first 19, validation = the other 17); it is cut first, so a
    wrong source fails before the long part. There is no public direct download.
    """
    unknown = set(options) - {"lines_per_file"}
    if unknown:
        raise TypeError(f"criteo1tb takes the option lines_per_file=N, not {', '.join(sorted(unknown))}")
    lines_per_file = int(options.get("lines_per_file", LINES_PER_FILE))
    if source is None:
        raise DataNotFoundError(
            "Criteo 1TB has no direct public download: get the 24 day files (day_0.gz ... day_23.gz, "
            "about 340 GB, from Criteo AI Lab's 'Criteo 1TB Click Logs') and pass --source FOLDER."
        )
    source = Path(source)
    if not source.is_dir():
        raise DataNotFoundError(f"--source {source} is not a folder holding day_0.gz ... day_23.gz. {SETUP_HINT}")
    days = {d: _day_source(source, d) for d in range(NUM_DAYS)}  # all present before any work
    out_dir = Path(data_dir) / "criteo1tb"
    out_dir.mkdir(parents=True, exist_ok=True)
    n = split_day(days[NUM_DAYS - 1], out_dir, NUM_DAYS - 1, lines_per_file)
    if n != NUM_DAY_23_FILES:
        raise ValueError(
            f"day 23 ({days[NUM_DAYS - 1]}) gave {n} files of {lines_per_file:,} lines; the validation/test "
            f"split needs {NUM_DAY_23_FILES} (the real day 23 has 178,274,637 lines: keep lines_per_file=5000000)"
        )
    for day in range(NUM_DAYS - 1):
        split_day(days[day], out_dir, day, lines_per_file)
    return out_dir
