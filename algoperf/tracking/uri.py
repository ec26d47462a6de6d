"""Where MLflow records go: the tracking URI, and the local store's files.

Precedence: ``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else a SQLite file in the
working directory (``sqlite:///<cwd>/mlflow.db``, MLflow 3's own default, made absolute
so that Ray workers with another working directory write the same file). The file store
(``./mlruns``) is refused: MLflow 3 deprecates it.

A local SQLite store keeps its artifacts beside the database in ``mlartifacts/`` (the
folder ``mlflow server`` serves by default when started in that directory).
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

DEFAULT_DB_NAME = "mlflow.db"
ARTIFACTS_DIR_NAME = "mlartifacts"

# Schemes of SQLAlchemy stores MLflow accepts ("postgresql+psycopg2" etc. share a prefix).
_DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
_HTTP_SCHEMES = ("http", "https")
_OTHER_SCHEMES = ("databricks", "databricks-uc", "uc")


class TrackingError(RuntimeError):
    """A tracking setup that cannot work; the message says what to change."""


def _scheme(uri: str) -> str:
    return uri.split(":", 1)[0].split("+", 1)[0].lower() if ":" in uri else ""


def resolve_tracking_uri(cli_value: str | None = None) -> str:
    """The tracking URI to use: the option, else $MLFLOW_TRACKING_URI, else ./mlflow.db.

    A bare path ending in ``.db`` means a SQLite file; relative SQLite paths are made
    absolute. Raises :class:`TrackingError` for the file store or an unknown scheme.
    """
    source = "--tracking-uri"
    uri = cli_value
    if not uri:
        uri, source = os.environ.get("MLFLOW_TRACKING_URI") or None, "MLFLOW_TRACKING_URI"
    if not uri:
        return f"sqlite:///{Path.cwd() / DEFAULT_DB_NAME}"
    uri = uri.strip()
    scheme = _scheme(uri)
    if scheme == "" and uri.endswith(".db"):
        return f"sqlite:///{Path(uri).expanduser().resolve()}"
    if scheme in ("", "file"):
        raise TrackingError(
            f"{source}={uri!r} is an MLflow file store (./mlruns), which MLflow 3 deprecates: "
            f"use a SQLite file instead, e.g. --tracking-uri sqlite:///{Path.cwd() / DEFAULT_DB_NAME}"
        )
    if scheme == "sqlite":
        path = sqlite_path(uri)
        if path is not None:
            return f"sqlite:///{path}"
        return uri
    if scheme in _DB_SCHEMES or scheme in _HTTP_SCHEMES or scheme in _OTHER_SCHEMES:
        return uri.rstrip("/") if scheme in _HTTP_SCHEMES else uri
    raise TrackingError(
        f"{source}={uri!r}: unknown tracking URI scheme {scheme!r}; use http(s)://host:port for "
        "an MLflow server, sqlite:///path/mlflow.db for a local file, or postgresql://... / mysql://..."
    )


def is_http(uri: str) -> bool:
    """Whether ``uri`` names an MLflow tracking server."""
    return _scheme(uri) in _HTTP_SCHEMES


def is_database(uri: str) -> bool:
    """Whether ``uri`` is a database MLflow writes directly (SQLite, PostgreSQL, ...)."""
    return _scheme(uri) in _DB_SCHEMES


def sqlite_path(uri: str) -> Path | None:
    """The absolute path of a SQLite store's file, or None (not SQLite, or in memory)."""
    if _scheme(uri) != "sqlite":
        return None
    rest = uri.split(":", 1)[1]
    if not rest.startswith("///"):
        return None
    raw = urllib.parse.unquote(rest[3:].split("?", 1)[0])
    if raw in ("", ":memory:"):
        return None
    return Path(raw).expanduser().resolve()


def local_artifacts_dir(uri: str) -> Path | None:
    """``<folder of the SQLite file>/mlartifacts`` for a local SQLite store, else None."""
    path = sqlite_path(uri)
    return None if path is None else path.parent / ARTIFACTS_DIR_NAME


def display_uri(uri: str) -> str:
    """The URI without a password, for messages."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return uri
