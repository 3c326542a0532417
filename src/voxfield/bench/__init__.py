"""Benchmarks: codecs × inputs × target ratios, measured on the bytes written."""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voxfield.bench.datasets import Dataset, dataset_from_path, default_datasets, find_data_root
    from voxfield.bench.report import markdown_table, rd_plots, write_results
    from voxfield.bench.runner import BenchConfig, plan, run_benchmark, run_one

__all__ = [
    "BenchConfig",
    "Dataset",
    "dataset_from_path",
    "default_datasets",
    "find_data_root",
    "markdown_table",
    "plan",
    "rd_plots",
    "run_benchmark",
    "run_one",
    "write_results",
]


#: Re-exported name -> the submodule that defines it, imported on first use so that
#: importing this package stays light (start-up time, issue 15).
_LAZY = {
    "Dataset": "voxfield.bench.datasets",
    "dataset_from_path": "voxfield.bench.datasets",
    "default_datasets": "voxfield.bench.datasets",
    "find_data_root": "voxfield.bench.datasets",
    "markdown_table": "voxfield.bench.report",
    "rd_plots": "voxfield.bench.report",
    "write_results": "voxfield.bench.report",
    "BenchConfig": "voxfield.bench.runner",
    "plan": "voxfield.bench.runner",
    "run_benchmark": "voxfield.bench.runner",
    "run_one": "voxfield.bench.runner",
}


def __getattr__(name: str) -> object:
    """Import a re-exported name (or a submodule) on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
