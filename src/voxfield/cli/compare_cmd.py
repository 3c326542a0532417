"""``voxfield compare ORIGINAL RESULT -o fig.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from voxfield.cli import console
from voxfield.cli.metrics_cmd import load_result
from voxfield.io import check_writable, read_volume


def compare(
    original: Annotated[Path, typer.Argument(help="Original volume.")],
    result: Annotated[Path, typer.Argument(help="Result volume or .vxf file.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG to write.")] = Path("compare.png"),
    channel: Annotated[int, typer.Option(help="Channel to show for multichannel data.")] = 0,
    title: Annotated[str | None, typer.Option(help="Figure title.")] = None,
    axes: Annotated[str | None, typer.Option(help="Override both files' axis letters.")] = None,
) -> None:
    """Render orthogonal central slices of original, result and difference (shared colour scale)."""
    from voxfield.viz.slices import compare_figure

    check_writable(output)
    orig = read_volume(original, axes=axes)
    res, _ = load_result(result, axes)
    compare_figure(orig, res, output, channel=channel, title=title or f"{original.name} vs {result.name}")
    console.out.print(f"wrote {output}")
