"""The docker image's build record: ``python -m algoperf.environment write-image-record``."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Any


def write_image_record(path: Path, fields: dict[str, str]) -> dict[str, Any]:
    """Write what a docker image holds: ``fields`` (build args) and every installed package.

    ``image`` names it in one line (tagged on every trial as ``algoperf.versions.image``).
    """
    packages = {dist.metadata["Name"].lower(): dist.version for dist in importlib.metadata.distributions()}
    record: dict[str, Any] = {
        "python": platform.python_version(),
        **fields,
        "packages": dict(sorted(packages.items())),
    }
    record.setdefault(
        "image",
        f"algoperf {packages.get('algoperf', '?')} jax[{fields.get('jax_extra', '?')}] "
        f"commit {fields.get('git_commit') or 'unknown'}",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    """``python -m algoperf.environment write-image-record PATH [--set key=value ...]``."""
    parser = argparse.ArgumentParser(prog="python -m algoperf.environment")
    sub = parser.add_subparsers(dest="command", required=True)
    write = sub.add_parser("write-image-record", help="record the image's build args and packages")
    write.add_argument("path", type=Path)
    write.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a build fact to record")
    args = parser.parse_args(argv)
    fields = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--set {item!r}: expected KEY=VALUE")
        fields[key] = value
    record = write_image_record(args.path, fields)
    print(f"wrote {args.path}: {record['image']}, {len(record['packages'])} packages")
    return 0
