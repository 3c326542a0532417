"""``voxfield bench``: codecs × inputs × ratios, written as JSON, Markdown and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from voxfield.cli import console
from voxfield.errors import OptionError
from voxfield.io import check_writable


def parse_list(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise OptionError(f"empty {what} list")
    return items


def bench(
    inputs: Annotated[list[str] | None, typer.Argument(help="Input files, optionally PATH:AXES (e.g. stack.tif:ZYX) [default: the real-data set of ../shared/data].")] = None,
    codecs: Annotated[str, typer.Option(help="Comma-separated classic codecs and neural methods (settings in brackets: sci[max_blocks=8]), or 'all' classic codecs.")] = "all",
    ratios: Annotated[str, typer.Option(help="Comma-separated target ratios.")] = "16,64,256",
    out: Annotated[Path, typer.Option("-o", "--out", help="Folder for results.json, results.md and PNG plots.")] = Path("benchmarks/results/latest"),
    name: Annotated[str, typer.Option(help="Base name of the result files.")] = "results",
    tolerance: Annotated[float, typer.Option(help="Accepted relative deviation from each target ratio.")] = 0.03,
    data_root: Annotated[Path | None, typer.Option(help="Data collection folder (default ../shared/data).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds allowed per run.")] = 1800.0,
) -> None:
    """Compare codecs at matched compression ratios on real volumes."""
    from voxfield.bench import BenchConfig, dataset_from_path, default_datasets, run_benchmark, write_results
    from voxfield.bench.methods import MethodSpec, parse_methods
    from voxfield.codecs.registry import available_codecs

    names = available_codecs() if codecs == "all" else parse_methods(codecs)
    for n in names:
        MethodSpec.parse(n)  # unknown names and settings fail now, not an hour later
    try:
        rs = [float(r) for r in parse_list(ratios, "ratio")]
    except ValueError:
        raise OptionError(f"--ratios must be numbers, got {ratios!r}") from None
    if any(r <= 1 for r in rs):
        raise OptionError("every ratio must be > 1")
    datasets = [dataset_from_path(i) for i in inputs] if inputs else default_datasets(data_root)
    for ds in datasets:
        if not ds.path.exists():
            raise OptionError(f"input not found: {ds.path}")
    out.mkdir(parents=True, exist_ok=True)
    check_writable(out / f"{name}.json")
    doc = run_benchmark(datasets, BenchConfig(codecs=names, ratios=rs, rtol=tolerance, timeout_s=timeout))
    paths = write_results(doc, out, name=name)
    failed = [r for r in doc["runs"] if "error" in r]
    console.out.print(f"{len(doc['runs'])} runs ({len(failed)} failed) in {doc['duration_s'] / 60:.1f} min; wrote "
                      + ", ".join(str(p) for p in paths))
    for r in failed:
        console.err.print(f"[yellow]failed:[/] {r['dataset']} {r['codec']} {r['target']}: {r['error']}")
