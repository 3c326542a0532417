"""Terminal output shared by the commands: rich consoles, one-line errors and warnings."""

from __future__ import annotations

import sys
import warnings
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape

#: Normal output (tables, reports) goes to stdout; messages go to stderr.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def error_line(message: str) -> None:
    """Print ``voxfield: error: <message>`` on one line to stderr."""
    one_line = " ".join(str(message).split())
    err.print(f"[bold red]voxfield: error:[/] {escape(one_line)}", markup=True, highlight=False)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    one_line = " ".join(str(message).split())
    err.print(f"[yellow]voxfield: warning:[/] {escape(one_line)}", markup=True, highlight=False)


def install_warning_handler() -> None:
    """Show Python warnings as one ``voxfield: warning:`` line each (no source lines)."""
    warnings.showwarning = _show_warning  # type: ignore[assignment]
    warnings.simplefilter("default")
    # Libraries' own deprecation chatter is not the user's business.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def print_json(obj: Any) -> None:
    """Write ``obj`` as JSON to stdout (plain, machine readable)."""
    import json

    from voxfield.io.metajson import to_jsonable

    sys.stdout.write(json.dumps(to_jsonable(obj), indent=2, allow_nan=True) + "\n")
    sys.stdout.flush()
