"""User-facing error types.

Every problem caused by the user's input (a file, an option, a target) is raised as a
:class:`VoxfieldError` subclass. The command line prints it as one line
(``voxfield: error: <file>: <problem>``) and exits with code 2, without a traceback.
Anything else that escapes is a bug in voxfield.
"""

from __future__ import annotations

from os import PathLike


class VoxfieldError(Exception):
    """Base class of errors that are the user's to fix (bad input, bad option)."""

    exit_code = 2

    def __init__(self, message: str, path: str | PathLike[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class FormatError(VoxfieldError):
    """Unknown, corrupt or truncated file, or a header that cannot be trusted."""


class DataError(VoxfieldError):
    """Array content or shape that voxfield refuses (NaN/Inf, empty, absurd, wrong dtype)."""


class OutputError(VoxfieldError):
    """The output path cannot be written (missing folder, no permission, exists)."""


class OptionError(VoxfieldError):
    """An option value that makes no sense (ratio <= 1, unknown codec, bad ROI)."""


class TargetNotMet(VoxfieldError):
    """A codec could not reach the requested target within tolerance.

    ``best`` holds the closest payload that was produced, ``achieved`` its measured value
    (e.g. the compression ratio), so that benchmarks can still record the nearest point.
    """

    def __init__(
        self,
        message: str,
        path: str | PathLike[str] | None = None,
        *,
        best: bytes | None = None,
        achieved: float | None = None,
    ) -> None:
        super().__init__(message, path)
        self.best = best
        self.achieved = achieved


def library_failure(exc: BaseException) -> bool:
    """True when ``exc`` is a library's reaction to bad data, to be reported as a
    :class:`FormatError`: any exception except interrupts, exits, memory exhaustion and
    voxfield's own errors. Rust extensions surface panics as pyo3's ``PanicException``, a
    ``BaseException``, which this counts as a library failure too."""
    return not isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError, VoxfieldError))


def describe_exception(exc: BaseException, limit: int = 200) -> str:
    """``"<ExceptionType>: <message>"`` on one line (just the type when there is no
    message), cut to ``limit`` characters, for quoting a library's exception inside a
    :class:`VoxfieldError` message."""
    flat = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {flat}" if flat else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
