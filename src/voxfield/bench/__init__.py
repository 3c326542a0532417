"""Benchmarks: codecs × inputs × target ratios, measured on the bytes written."""

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
