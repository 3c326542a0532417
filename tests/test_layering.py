"""Import layering of the package, checked from the source with ``ast`` (no import runs).

* No module outside ``voxfield/cli/`` imports ``voxfield.cli`` (at any level, function-level
  imports and ``importlib.import_module("voxfield.cli...")`` included): the library does not
  depend on the command line. The only exceptions are the modules whose job is to run the
  command line as a user would, and they may use its entry point ``voxfield.cli.main.main``
  and nothing else from ``cli``: ``voxfield/__main__.py`` (``python -m voxfield``) and the
  fuzzing harness ``voxfield/bench/fuzz*.py`` (it drives ``main(argv)`` with hostile input).
* ``voxfield/io/`` and ``voxfield/metrics/`` import nothing from voxfield but
  ``voxfield.errors`` and their own package: they are the bottom layer every other package
  uses.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "voxfield"

#: Modules (paths relative to src/voxfield, glob patterns) allowed to import the CLI entry point.
CLI_ENTRY_POINT_USERS = ("__main__.py", "bench/fuzz*.py")
#: What those modules may import from cli: the entry-point module and its ``main``.
CLI_ENTRY_POINT = "voxfield.cli.main"

#: Packages that may import only voxfield.errors and themselves.
BOTTOM_LAYER = ("io", "metrics")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str | None, level: int, this: str, is_package: bool) -> str:
    """Absolute module name of ``from <level dots><module> import ...`` in module ``this``."""
    if level == 0:
        return module or ""
    base = this.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports(path: Path, this: str | None = None) -> Iterator[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in the file, at any level. For
    ``from pkg import name`` both ``pkg`` and ``pkg.name`` are given (``name`` may be a
    submodule: ``from voxfield import cli``). ``this``: the file's module name (default: from
    its place under src/)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    this = this or _module_name(path)
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            mod = _resolve(node.module, node.level, this, is_package)
            yield node.lineno, mod
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{mod}.{alias.name}" if mod else alias.name
        elif isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if name in ("import_module", "__import__") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    yield node.lineno, arg.value


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _py_files() -> list[Path]:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 50, f"no sources found under {SRC}"
    return files


def _rel(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


def test_library_does_not_import_cli() -> None:
    bad = []
    for path in _py_files():
        rel = _rel(path)
        if rel.startswith("cli/"):
            continue
        entry_ok = any(Path(rel).match(pat) for pat in CLI_ENTRY_POINT_USERS)
        for line, name in imports(path):
            if not _within(name, "voxfield.cli"):
                continue
            # ``from voxfield.cli.main import main`` yields voxfield.cli.main and voxfield.cli.main.main,
            # ``import voxfield.cli.main`` the former; anything else from cli is refused everywhere.
            if entry_ok and name in (CLI_ENTRY_POINT, CLI_ENTRY_POINT + ".main"):
                continue
            bad.append(f"{rel}:{line}: imports {name}")
    assert not bad, "library modules must not import voxfield.cli:\n" + "\n".join(bad)


@pytest.mark.parametrize("package", BOTTOM_LAYER)
def test_bottom_layer_imports_only_errors(package: str) -> None:
    own = f"voxfield.{package}"
    bad = []
    for path in sorted((SRC / package).rglob("*.py")):
        for line, name in imports(path):
            if not _within(name, "voxfield"):
                continue
            if _within(name, own) or _within(name, "voxfield.errors"):
                continue
            if name == "voxfield":  # ``from voxfield import errors`` also yields voxfield.errors
                continue
            bad.append(f"{_rel(path)}:{line}: imports {name}")
    assert not bad, f"voxfield.{package} may import only voxfield.errors and itself:\n" + "\n".join(bad)


def test_import_walker_sees_every_form(tmp_path: Path) -> None:
    """The walker finds module-level, function-level, relative and importlib imports."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import voxfield.cli.console\n"
        "def f():\n"
        "    from ..cli import console\n"
        "    from voxfield import cli\n"
        "    import importlib\n"
        "    importlib.import_module('voxfield.cli.bench_cmd')\n"
    )
    found = sorted((line, name) for line, name in imports(probe, "voxfield.bench.probe") if _within(name, "voxfield.cli"))
    assert found == [
        (1, "voxfield.cli.console"),
        (3, "voxfield.cli"),
        (3, "voxfield.cli.console"),
        (4, "voxfield.cli"),
        (6, "voxfield.cli.bench_cmd"),
    ]
