"""``algoperf score`` and MLflow: read a campaign's trials, log its scores back onto it.

The reading is :func:`algoperf.tracking.read_campaign`, the writing
:func:`algoperf.tracking.log_scores`; here their failures become one clear line
(:class:`ScoringError` while reading; after printing, exit status 1 while logging back,
since the scores are already shown).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from algoperf.scoring.errors import ScoringError
from algoperf.scoring.logs import TrialLog


def _tracking_failure(uri: str, exc: Exception, doing: str) -> str:
    from algoperf.tracking.uri import display_uri

    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return (
        f"{doing} {display_uri(uri)} failed ({type(exc).__name__}: {first}); check that the "
        "store is up, or pass --tracking-uri"
    )


def read_experiment(
    uri: str, name: str, ruleset: str | None, warn: Callable[[str], None]
) -> list[TrialLog]:
    """The trial records of MLflow experiment ``name``, as :class:`ScoringError` on failure."""
    from algoperf.tracking import TrackingError, read_campaign
    from algoperf.tracking.uri import display_uri

    try:
        records = read_campaign(uri, name, warn=warn)
    except TrackingError as exc:
        raise ScoringError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - the store failed: one line, not a traceback
        doing = f"reading experiment {name!r} from"
        raise ScoringError(_tracking_failure(uri, exc, doing)) from None
    if not records:
        raise ScoringError(
            f"MLflow experiment {name!r} in {display_uri(uri)} holds no trial runs "
            "(algoperf.kind=trial): record a campaign with `algoperf run` or import its logs "
            "with `algoperf mlflow import DIR`"
        )
    if ruleset is not None:
        held = sorted({r.ruleset for r in records})
        records = [r for r in records if r.ruleset == ruleset]
        if not records:
            raise ScoringError(
                f"MLflow experiment {name!r} holds no {ruleset} tuning trials (it holds "
                f"{', '.join(held)}): drop --ruleset or pick another"
            )
    return records


def log_scores_back(scored: Any, digits: int, say: Callable[[str], None]) -> None:
    """Each campaign's rulesets' scores onto it as a score run; exit 1 if the store fails."""
    from shlex import quote

    from algoperf.tracking import TrackingError, log_scores
    from algoperf.tracking.server import runs_page_url
    from algoperf.tracking.uri import display_uri, is_http

    uri = scored.tracking_uri
    assert uri is not None
    for name, rulesets in scored.campaigns.items():
        for rep in scored.reports:
            if rep.ruleset not in rulesets:
                continue
            try:
                logged = log_scores(
                    uri,
                    name,
                    rep,
                    sources=scored.sources.get(rep.ruleset, ()),
                    targets_source=scored.targets_source,
                    digits=digits,
                )
            except Exception as exc:  # noqa: BLE001 - one line, not a traceback
                text = (
                    str(exc)
                    if isinstance(exc, TrackingError)
                    else _tracking_failure(
                        uri, exc, f"logging the scores onto experiment {name!r} in"
                    )
                )
                typer.echo(
                    f"error: scores computed (above) but not logged back to MLflow: {text}; "
                    "run the command again to log them, or pass --no-log-back",
                    err=True,
                )
                raise typer.Exit(code=1) from None
            if is_http(uri):
                where = runs_page_url(uri, logged.experiment_id)
            else:
                here = uri == f"sqlite:///{Path.cwd() / 'mlflow.db'}"
                where = f"{display_uri(uri)} (view with `algoperf ui --experiment {quote(name)}" + (
                    "`)" if here else f" --tracking-uri {display_uri(uri)}`)"
                )
            say(
                f"MLflow: {rep.ruleset} tuning scores logged onto experiment {name!r} as run "
                f"{logged.run_id}"
                + (f" (replacing {logged.replaced} older)" if logged.replaced else "")
                + f": {where}"
            )
