"""Which global batch size a trial uses, and why.

AlgoPerf asks the submission: ``get_batch_size(workload_name)``. Published submissions
only know AlgoPerf's workload names, so a small-suite workload would be refused by every
one of them. The rule, in order (the first that gives a size wins):

1. ``--batch-size WORKLOAD=N`` on the command line.
2. The submission's answer for the workload's own name.
3. For a variant, its answer for the base workload's name (as AlgoPerf does).
4. For a workload that stands in for an AlgoPerf workload (``reference_workload``), its
   answer for that workload, scaled to the small workload:

       b = round(default_batch_size * b_ref / reference_batch_size)   clipped to [1, n_train]

   where ``reference_batch_size`` is the batch size AlgoPerf's baselines use on the
   reference workload and ``default_batch_size`` the size the small workload's targets
   were set with. A submission that trains criteo1tb at half the baselines' batch trains
   ctr at half its default: the submission's relative choice survives, while the absolute
   size (262,144 on criteo1tb, more rows than ctr's training set) would not.
5. The workload's ``default_batch_size``.

A submission "does not know" a name when ``get_batch_size`` raises ``ValueError``,
``KeyError`` (``LookupError``) or ``NotImplementedError``, or returns ``None``; any other
non-positive or non-integer answer is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from algoperf import spec


class BatchSizeError(ValueError):
    """No batch size can be chosen for a workload; the message says what to do."""


@dataclass(frozen=True)
class BatchSizeChoice:
    """A batch size and, in words, where it came from (shown in the trial header)."""

    size: int
    source: str


_UNKNOWN = (LookupError, ValueError, NotImplementedError)


def parse_overrides(values: list[str]) -> dict[str, int]:
    """``["ctr=512", "mnist1d=64"]`` -> ``{"ctr": 512, "mnist1d": 64}``."""
    overrides: dict[str, int] = {}
    for value in values:
        name, sep, number = value.partition("=")
        if not sep or not name.strip() or not number.strip().isdigit() or int(number) <= 0:
            raise BatchSizeError(f"--batch-size {value!r}: give WORKLOAD=N with N a positive integer, e.g. ctr=512")
        overrides[name.strip()] = int(number)
    return overrides


def _ask(get_batch_size: Callable[[str], int], name: str, where: str) -> int | None:
    try:
        size = get_batch_size(name)
    except _UNKNOWN:
        return None
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise BatchSizeError(f"{where}: get_batch_size({name!r}) returned {size!r}; it must be a positive int")
    return size


def choose_batch_size(
    get_batch_size: Callable[[str], int],
    workload: spec.Workload,
    workload_name: str,
    overrides: Mapping[str, int] | None = None,
    where: str = "the submission",
) -> BatchSizeChoice:
    """The batch size for ``workload`` by the rule in this module's docstring.

    ``where`` names the submission (its file) in error messages.
    """
    if overrides and workload_name in overrides:
        return BatchSizeChoice(overrides[workload_name], f"--batch-size {workload_name}={overrides[workload_name]}")
    asked = []
    for name in dict.fromkeys(n for n in (workload_name, workload.base_workload) if n):
        asked.append(name)
        size = _ask(get_batch_size, name, where)
        if size is not None:
            return BatchSizeChoice(size, f"get_batch_size({name!r})")
    reference, default = workload.reference_workload, workload.default_batch_size
    if reference and reference not in asked:
        asked.append(reference)
        size = _ask(get_batch_size, reference, where)
        if size is not None:
            if default is None or workload.reference_batch_size is None:
                return BatchSizeChoice(size, f"get_batch_size({reference!r}), unscaled")
            scaled = max(1, round(default * size / workload.reference_batch_size))
            scaled = min(scaled, workload.num_train_examples)
            return BatchSizeChoice(
                scaled,
                f"get_batch_size({reference!r}) = {size:,} x {default}/{workload.reference_batch_size:,} "
                f"({workload_name}'s default / AlgoPerf's baseline batch for {reference})",
            )
    if default is not None:
        return BatchSizeChoice(default, f"{workload_name}'s default (get_batch_size knows none of {', '.join(map(repr, asked))})")
    raise BatchSizeError(
        f"{where}: get_batch_size does not know workload {workload_name!r} (asked {', '.join(map(repr, asked))}); "
        f"add a case for it, or pass --batch-size {workload_name}=N"
    )
