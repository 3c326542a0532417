"""The README starts with exactly the two set-up commands, and CI runs the test one."""

from __future__ import annotations

import re

from conftest import ROOT


def _first_section_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.M)
    first = sections[1]
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", first, flags=re.S)]


def test_readme_has_exactly_two_commands():
    cmds = _first_section_commands()
    assert len(cmds) == 2
    assert all("\n" not in c for c in cmds)
    run, test = cmds
    assert "torch==2.13.0" in run and run.endswith("voxfield demo")
    assert "torch==2.13.0" in test and "pytest" in test
    # torch is installed before the package, so no CUDA build is pulled in
    assert run.index("torch==2.13.0") < run.index("-e .")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert _first_section_commands()[1] in ci.splitlines()
