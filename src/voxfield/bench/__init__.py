"""Benchmarks: codecs × inputs × target ratios, measured on the bytes written."""

from __future__ import annotations

from typing import TYPE_CHECKING

from voxfield._lazy import lazy_exports as _lazy_exports

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


__getattr__, __dir__ = _lazy_exports(__name__, _LAZY, globals())
