"""Shared entry-point wrapper: user errors become one line on stderr and exit 2."""

from __future__ import annotations

import sys
from collections.abc import Callable

from pipeline.core.errors import IlkdError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def main(entry: Callable[[], object]) -> None:
    try:
        entry()
    except IlkdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("interrupted: the last finished epoch is checkpointed; rerun to resume",
              file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
