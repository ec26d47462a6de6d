"""criteo1tb (DLRM-small) and variants: parameter counts, TSV parsing and hashing against
TensorFlow's values and an independent per-field oracle, `algoperf data prepare` from
official-format day files, a train step and evaluation through the real pipeline.

The 4,194,304 x 128 table is never allocated: counts come from ``jax.eval_shape``, and the
data tests use a subclass with a 64-row table and narrow MLPs.
"""

from __future__ import annotations

import gzip
import math
import subprocess
import sys
from pathlib import Path

import farmhash
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algoperf import param_utils, spec
from algoperf.workloads.criteo1tb import WORKLOADS, input_pipeline, prepare
from tests.workload_checks import assert_seeks_like_an_uninterrupted_stream, sgd_step_losses

ROOT = Path(__file__).resolve().parents[1]

# The spec sheet's counts (derived there by hand from layer shapes; ours agree exactly).
SHEET_PARAMS = {
    "criteo1tb": 539_267_457,
    "criteo1tb_layernorm": 539_275_137,
    "criteo1tb_resnet": 538_121_473,
    "criteo1tb_embed_init": 539_267_457,
}


@pytest.mark.parametrize("name", sorted(SHEET_PARAMS))
def test_param_count_matches_sheet(name):
    workload = WORKLOADS[name]()
    params, state = jax.eval_shape(lambda: workload.init_model_fn(jax.random.PRNGKey(0)))
    assert param_utils.num_params(params) == SHEET_PARAMS[name]
    assert params["embedding_table"].shape == (4_194_304, 128)
    assert workload.is_output_params("Dense_7") and params["Dense_7"]["kernel"].shape[1] == 1
    assert workload.model_params_types["embedding_table"] == spec.ParameterType.EMBEDDING
    assert state is None


def test_constants():
    base = WORKLOADS["criteo1tb"]
    assert base.num_eval_train_examples == 636 * 131_072
    assert (base.max_allowed_runtime_sec, base.eval_period_time_sec, base.step_hint) == (7_703, 120, 10_666)
    assert WORKLOADS["criteo1tb_resnet"].base_workload == "criteo1tb"
    assert base.data_source == "download"


# --- hashing -------------------------------------------------------------------------------
def _hash_bucket(text: str, buckets: int) -> int:
    """tf.strings.to_hash_bucket_fast: Fingerprint64 mod buckets (here through the vectorised path
    for 8..16-byte strings and pyfarmhash otherwise)."""
    data = text.encode()
    if 8 <= len(data) <= 16:
        first = np.frombuffer(data[:8], "<u8")
        last = np.frombuffer(data[-8:], "<u8")
        return int(input_pipeline.fingerprint64_8_to_16(first, last, np.array([len(data)]))[0]) % buckets
    return input_pipeline.fingerprint64(data) % buckets


def test_fingerprint64_is_tensorflows():
    # TensorFlow's frozen values (fingerprint_test.cc) and its documented example
    # to_hash_bucket_fast(["Hello", "TensorFlow", "2.x"], 3) == [0, 2, 2].
    assert input_pipeline.fingerprint64(b"Hello") == 15404698994557526151
    assert input_pipeline.fingerprint64(b"World") == 18308117990299812472
    assert [_hash_bucket(s, 3) for s in ("Hello", "TensorFlow", "2.x")] == [0, 2, 2]
    # The vectorised 8..16-byte path equals FarmHash on random bytes of every such length.
    rng = np.random.default_rng(0)
    for length in range(8, 17):
        data = [bytes(rng.integers(0, 256, length).astype(np.uint8)) for _ in range(40)]
        first = np.array([np.frombuffer(d[:8], "<u8")[0] for d in data])
        last = np.array([np.frombuffer(d[-8:], "<u8")[0] for d in data])
        got = input_pipeline.fingerprint64_8_to_16(first, last, np.full(40, length))
        assert [int(g) for g in got] == [farmhash.fingerprint64(d) for d in data]


# --- parsing -------------------------------------------------------------------------------
def _line(label: str, dense: list[str], cats: list[str]) -> str:
    return "\t".join([label, *dense, *cats]) + "\n"


def _random_lines(rng: np.random.Generator, n: int) -> list[str]:
    """Lines shaped like the real logs: label, 13 ints (some empty, some -1 or negative),
    26 eight-digit hex strings (some empty)."""
    lines = []
    for _ in range(n):
        dense = [("" if v < -2 else str(int(v))) for v in rng.integers(-4, 3000, 13)]
        cats = [("" if v % 7 == 0 else f"{v:08x}") for v in rng.integers(0, 2**32, 26)]
        lines.append(_line(str(int(rng.integers(0, 2))), dense, cats))
    return lines


def _oracle(line: str) -> tuple[float, np.ndarray]:
    """Per-field parse, written from the reference's description with pyfarmhash directly."""
    fields = line.rstrip("\r\n").split("\t")  # TextLineDataset drops '\n' and '\r\n'
    label = 0.0 if fields[0] in ("", "-1") else float(fields[0])
    dense = np.array([0.0 if v in ("", "-1") else float(v) for v in fields[1:14]], np.float32)
    dense = np.log(np.maximum(dense, np.float32(0)) + np.float32(1))
    ids = []
    for j, v in enumerate(fields[14:]):
        text = "00000000" if v in ("", "-1") else v
        ids.append(np.float32(farmhash.fingerprint64((text + str(j)).encode()) % input_pipeline.VOCAB_SIZES[j]))
    return label, np.concatenate([dense, np.array(ids, np.float32)])


def _oracle_arrays(lines: list[str]) -> dict[str, np.ndarray]:
    rows = [_oracle(line) for line in lines]
    return {"inputs": np.stack([r[1] for r in rows]), "targets": np.array([r[0] for r in rows], np.float32)}


def test_parse_matches_per_field_oracle():
    rng = np.random.default_rng(0)
    lines = _random_lines(rng, 300)
    # Unusual fields take the slow paths: a decimal and a 20-digit integer, categoricals of
    # 3 and 16 characters, the NA text in both kinds, CRLF line ends.
    odd = _line("-1", ["2.5", "-1", "12345678901234567890"] + ["7"] * 10, ["abc", "0123456789abcdef", "-1"] + ["68fd1e64"] * 23)
    lines += [odd, lines[0].replace("\n", "\r\n")]
    out = input_pipeline.parse_lines(lines)
    expected = _oracle_arrays(lines)
    assert out["inputs"].shape == (302, 39) and out["inputs"].dtype == np.float32
    np.testing.assert_array_equal(out["targets"], expected["targets"])
    np.testing.assert_array_equal(out["inputs"][:, 13:], expected["inputs"][:, 13:])
    np.testing.assert_allclose(out["inputs"][:, :13], expected["inputs"][:, :13], rtol=1e-6)
    # Hand values: log1p of max(x, 0); '' and '-1' -> 0; '2.5' -> log(3.5).
    np.testing.assert_allclose(out["inputs"][300, :4], [np.log(3.5), 0.0, np.log(12345678901234567891.0), np.log(8.0)], rtol=1e-6)
    assert out["inputs"][300, 13 + 2] == np.float32(farmhash.fingerprint64(b"000000002") % 17289)  # '-1' -> default
    # Ids above 2^24 (five columns' sizes exceed it) are rounded by the float32 cast, as in the reference.
    exact = [farmhash.fingerprint64((line.split("\t")[14].strip() or "00000000").encode() + b"0") % 39884406 for line in lines[:300]]
    rounded = [e for e in exact if e > 2**24 and int(np.float32(e)) != e]
    assert rounded, "no id above 2^24 in the sample"


def test_parse_errors_name_the_problem():
    with pytest.raises(ValueError, match="2 tab-separated fields"):
        input_pipeline.parse_lines(["1\t2\n"], "day_0_00")
    bad = _line("1", ["x1"] + ["0"] * 12, ["68fd1e64"] * 26)
    with pytest.raises(ValueError, match="day_5_01: field 1 is not a number"):
        input_pipeline.parse_lines([bad], "day_5_01")


# --- loss ----------------------------------------------------------------------------------
def test_loss_hand_computed():
    workload = WORKLOADS["criteo1tb"]()
    labels = jnp.array([1.0, 0.0, 1.0])
    logits = jnp.array([[0.0], [2.0], [5.0]])
    out = workload.loss_fn(labels, logits, jnp.array([1.0, 1.0, 0.0]))
    expected = [math.log(2.0), math.log(1.0 + math.exp(2.0))]
    np.testing.assert_allclose(out["per_example"][:2], expected, rtol=1e-6)
    assert float(out["per_example"][2]) == 0.0
    assert float(out["n_valid_examples"]) == 2.0
    np.testing.assert_allclose(out["summed"], sum(expected), rtol=1e-6)
    assert float(workload.loss_fn(labels, logits)["n_valid_examples"]) == 3.0


# --- files, prepare, pipeline ----------------------------------------------------------------
def test_missing_data_is_a_clear_error(tmp_path):
    workload = WORKLOADS["criteo1tb"]()
    with pytest.raises(spec.DataNotFoundError, match="--data-dir"):
        workload._build_input_queue(jax.random.PRNGKey(0), "train", None, 8)
    with pytest.raises(spec.DataNotFoundError, match="day_"):
        workload._build_input_queue(jax.random.PRNGKey(0), "validation", str(tmp_path), 8)
    (tmp_path / "day_0_00").write_text("")
    with pytest.raises(spec.DataNotFoundError, match="day_23_19 .. day_23_35"):
        workload._build_input_queue(jax.random.PRNGKey(0), "validation", str(tmp_path), 8)
    with pytest.raises(spec.DataNotFoundError, match="--source"):
        prepare.prepare(tmp_path / "out")
    with pytest.raises(spec.DataNotFoundError, match="day_0"):
        prepare.prepare(tmp_path / "out", tmp_path)


def test_reader_streams_and_names_the_bad_file(tmp_path):
    """A malformed line late in a file only fails when the reader gets there: batches
    before it come out first (the file is streamed, not loaded)."""
    lines = _random_lines(np.random.default_rng(1), 40)
    lines[33] = "1\t2\t3\n"
    path = tmp_path / "day_3_07.gz"
    with gzip.open(path, "wt") as f:
        f.writelines(lines)
    it = input_pipeline.batches([str(path)], 8, None, repeat=False, drop_remainder=False)
    first = next(it)
    np.testing.assert_array_equal(first["inputs"], _oracle_arrays(lines[:8])["inputs"])
    for _ in range(3):
        next(it)
    with pytest.raises(ValueError, match="day_3_07.gz: line 2 of this batch has 3"):
        next(it)


def _line_files(tmp_path: Path) -> tuple[list[str], list[str]]:
    """Three day pieces of 13, 7 and 9 lines (one gzipped, one without a final newline), and
    all their lines in file order."""
    rng = np.random.default_rng(2)
    files, every = [], []
    for name, n in (("day_0_00.gz", 13), ("day_0_01", 7), ("day_1_00", 9)):
        lines = _random_lines(rng, n)
        every += lines
        path = tmp_path / name
        if name.endswith(".gz"):
            with gzip.open(path, "wt") as f:
                f.writelines(lines)
        else:
            path.write_text("".join(lines)[:-1] if name == "day_0_01" else "".join(lines))
        files.append(str(path))
    return files, every


def test_a_resumed_train_stream_seeks_without_parsing_the_lines_it_skips(tmp_path, monkeypatch):
    """Resume (issue #24): seek(n) counts and skips lines, within an epoch, at its end (29
    lines: 7 batches of 4, one line dropped) and epochs later, and gives the same batches."""
    files, _ = _line_files(tmp_path)
    assert [input_pipeline.count_lines(f) for f in files] == [13, 7, 9]
    assert_seeks_like_an_uninterrupted_stream(
        lambda: input_pipeline.batches(files, 4, 11, repeat=True, drop_remainder=True), seeks=(0, 3, 6, 7, 15), length=18)

    parsed = []
    real_parse = input_pipeline.parse_block
    monkeypatch.setattr(input_pipeline, "parse_block", lambda data, source: parsed.append(source) or real_parse(data, source))
    resumed = input_pipeline.batches(files, 4, 11, repeat=True, drop_remainder=True)
    resumed.seek(12)
    next(resumed)
    assert 1 <= len(parsed) <= 2  # the one batch made, from the file(s) it spans


def test_a_finite_stream_seeks_to_its_padded_last_batch_and_past_its_end(tmp_path):
    files, every = _line_files(tmp_path)
    stream = input_pipeline.batches(files, 8, None, repeat=False, drop_remainder=False)
    stream.seek(3)
    last = next(stream)
    np.testing.assert_array_equal(last["inputs"][:5], _oracle_arrays(every[24:])["inputs"])
    assert last["weights"].tolist() == [1.0] * 5 + [0.0] * 3
    with pytest.raises(StopIteration):
        next(stream)
    stream.seek(4)
    with pytest.raises(StopIteration):
        next(stream)


class _TinyCriteo(WORKLOADS["criteo1tb"]):
    vocab_size = 64
    embed_dim = 4
    mlp_bottom_dims = (8, 4)
    mlp_top_dims = (8, 4, 1)
    eval_batch_size = 16


def _write_official_days(source: Path, rng: np.random.Generator) -> dict[int, list[str]]:
    """day_0.gz ... day_23.gz as downloaded (days 5 and 9 plain), 5 lines a day and 108 on day 23."""
    days = {}
    source.mkdir()
    for day in range(24):
        lines = _random_lines(rng, 108 if day == 23 else 5)
        days[day] = lines
        text = "".join(lines)
        if day in (5, 9):
            (source / f"day_{day}").write_text(text[:-1])  # no final newline
        else:
            with gzip.open(source / f"day_{day}.gz", "wt") as f:
                f.write(text)
    return days


def test_prepare_cli_then_train_step_and_eval(tmp_path):
    days = _write_official_days(tmp_path / "download", np.random.default_rng(2))
    data_dir = tmp_path / "data"
    proc = subprocess.run(
        [sys.executable, "-m", "algoperf.cli", "data", "prepare", "criteo1tb", "--data-dir", str(data_dir),
         "--source", str(tmp_path / "download"), "--option", "lines_per_file=3"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = data_dir / "criteo1tb"
    # The layout of `split -a 2 -d -l N`: day_{d}_{NN}, no extension, the day's lines in order.
    assert sorted(p.name for p in out.glob("day_23_*")) == [f"day_23_{i:02d}" for i in range(36)]
    assert sorted(p.name for p in out.glob("day_5_*")) == ["day_5_00", "day_5_01"]
    assert (out / "day_5_01").read_text() == "".join(days[5][3:])
    assert "".join((out / f"day_23_{i:02d}").read_text() for i in range(36)) == "".join(days[23])

    workload = _TinyCriteo()
    params, _ = workload.init_model_fn(jax.random.PRNGKey(1))
    # One epoch of train batches (days 0-22: 115 lines) holds every train line once.
    train = workload._build_input_queue(jax.random.PRNGKey(0), "train", str(data_dir), 5)
    seen = np.concatenate([np.asarray(next(train)["inputs"]) for _ in range(23)])
    expected = _oracle_arrays([line for d in range(23) for line in days[d]])["inputs"]
    order = lambda x: x[np.lexsort(x.T[::-1])]  # noqa: E731
    np.testing.assert_allclose(order(seen), order(expected), rtol=1e-6)

    # One SGD step on a train batch lowers that batch's loss.
    batch = next(train)
    assert "weights" not in batch and batch["inputs"].shape == (5, 39)

    before, after = sgd_step_losses(workload, params, batch, 0.5)
    assert after < before

    # Evaluation: validation = day_23_19..35 (51 lines: 3 batches of 16 plus a padded one),
    # test = day_23_00..18 (57 lines); log-loss by hand in float64 on the oracle's inputs.
    for split, lines in (("validation", days[23][57:]), ("test", days[23][:57])):
        result = workload._eval_model_on_split(split, len(lines), 16, params, None, jax.random.PRNGKey(2), str(data_dir))
        arrays = _oracle_arrays(lines)
        logits, _ = jax.jit(workload.model_fn, static_argnums=(3, 5))(params, arrays, None, spec.ForwardPassMode.EVAL, None, False)
        z = np.asarray(logits, np.float64)[:, 0]
        y = arrays["targets"].astype(np.float64)
        by_hand = np.mean(y * np.log1p(np.exp(-z)) + (1 - y) * np.log1p(np.exp(z)))
        np.testing.assert_allclose(result["loss"], by_hand, rtol=1e-5)


def test_prepare_rejects_a_day_23_that_does_not_give_36_files(tmp_path):
    _write_official_days(tmp_path / "download", np.random.default_rng(3))
    with pytest.raises(ValueError, match="gave 22 files"):
        prepare.prepare(tmp_path / "data", tmp_path / "download", lines_per_file="5")


# --- data parallel (tests/data_parallel_check.py) --------------------------------------------
def data_parallel_case() -> tuple[spec.Workload, dict[str, np.ndarray]]:
    """A 64-row table and narrow MLPs; a global batch of 16 parsed real-format lines."""
    batch = input_pipeline.parse_lines(_random_lines(np.random.default_rng(4), 16))
    return _TinyCriteo(), batch
