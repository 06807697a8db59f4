"""Application packages, the public way in: publish a package into the local service's store.

The store itself is the model's (``local.batch.model.app_package_store``) and
installing packages on nodes is the node side's
(``local.batch.node.app_package_install``); this module is what scripts and
tests use to fill the store before they create pools, from Python
(``app_packages.publish(data_dir, "hydro", "1.0", "hydro.zip", default=True)``)
or from the command line::

    python -m local.batch.app_packages publish --data-dir D APP VERSION ZIP [--default]
    python -m local.batch.app_packages list --data-dir D

A running service takes packages through its signed admin route too
(``PUT /_admin/applications/{app}/{version}``; ``dmsbatch apps publish``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from local.batch.model.app_package_store import list_applications, publish

__all__ = ["list_applications", "main", "publish"]


def main(argv: list[str] | None = None) -> None:
    """``python -m local.batch.app_packages publish --data-dir D APP VERSION ZIP [--default]``; ``list``."""
    parser = argparse.ArgumentParser(description="The local Batch service's application package store.")
    sub = parser.add_subparsers(dest="command", required=True)
    pub = sub.add_parser("publish", help="add a package version")
    pub.add_argument("--data-dir", type=Path, required=True, help="the local Batch service's data directory")
    pub.add_argument("app_id")
    pub.add_argument("version")
    pub.add_argument("zip", type=Path)
    pub.add_argument("--default", action="store_true", help="make this the application's default version")
    pub.add_argument("--display-name")
    lst = sub.add_parser("list", help="list applications")
    lst.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "publish":
        result = publish(args.data_dir, args.app_id, args.version, args.zip, display_name=args.display_name, default=args.default)
    else:
        result = list_applications(args.data_dir)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
