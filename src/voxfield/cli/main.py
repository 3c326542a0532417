"""The ``voxfield`` command."""

from __future__ import annotations

import sys

import typer

from voxfield import __version__
from voxfield.cli import console
from voxfield.cli.bench_cmd import bench
from voxfield.cli.compare_cmd import compare
from voxfield.cli.compress_cmd import compress, decompress
from voxfield.cli.compress_set_cmd import compress_set
from voxfield.cli.decode_cmd import decode
from voxfield.cli.demo import demo
from voxfield.cli.denoise_cmd import app as denoise_app
from voxfield.cli.info import info
from voxfield.cli.metrics_cmd import metrics
from voxfield.cli.reconstruct_cmd import app as reconstruct_app
from voxfield.errors import VoxfieldError

app = typer.Typer(
    name="voxfield",
    help="Compress, denoise and reconstruct biological volumes (cryo-EM maps, light microscopy).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        console.out.print(f"voxfield {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """voxfield command line."""


app.command()(info)
app.command()(metrics)
app.command()(compress)
app.command(name="compress-set")(compress_set)
app.command()(decompress)
app.command()(decode)
app.command()(compare)
app.command()(bench)
app.command()(demo)
app.add_typer(denoise_app, name="denoise")
app.add_typer(reconstruct_app, name="reconstruct")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one line and exit with code 2."""
    console.install_warning_handler()
    try:
        app(args=argv, prog_name="voxfield", standalone_mode=True)
    except VoxfieldError as exc:
        console.error_line(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        console.error_line("interrupted")
        return 130
    except MemoryError as exc:
        what = f" ({exc})" if str(exc) else ""
        console.error_line(f"{_named_file(argv)}out of memory{what}: the data are too large for this machine's RAM")
        return 2
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0


def _named_file(argv: list[str] | None) -> str:
    """``"<first existing path argument>: "`` for messages that must name the file."""
    import os

    for arg in (sys.argv[1:] if argv is None else argv):
        if not arg.startswith("-") and os.path.exists(arg):
            return f"{arg}: "
    return ""


if __name__ == "__main__":
    sys.exit(main())
