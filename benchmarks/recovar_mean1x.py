"""Run the ``recovar`` command with its mean reconstruction at 1x instead of 2x upsampling.

Used by ``run_cryobench.py --tools recovar_mean1x`` and run with RECOVAR's own Python
(``/path/to/recovar-env/bin/python benchmarks/recovar_mean1x.py pipeline ...``).

Why: with RECOVAR 1.0.5 on CPU, ``recovar pipeline``'s mean (``get_mean_conformation_relion``,
default ``upsampling_factor=2``) came out with its Fourier shells 3-6 inverted against the
ground truth on the 64 px CryoBench-style sets (AU-FSC 0.059 of the mean against the average
of the true states; see ``benchmarks/README.md``), while the same function with
``upsampling_factor=1`` on the same dataset gives 0.372. The covariance and the embedding
are computed around that mean, so the whole pipeline inherits it. This launcher changes only
that default and then runs RECOVAR's command line unchanged.
"""

from __future__ import annotations

import sys


def main() -> int:
    from recovar.command_line import main_commands
    from recovar.reconstruction import homogeneous

    original = homogeneous.get_mean_conformation_relion

    def mean_at_1x(*args, **kwargs):  # noqa: ANN002, ANN003 - RECOVAR's own signature
        kwargs.setdefault("upsampling_factor", 1)
        return original(*args, **kwargs)

    homogeneous.get_mean_conformation_relion = mean_at_1x
    sys.argv[0] = "recovar"
    return int(main_commands() or 0)


if __name__ == "__main__":
    sys.exit(main())
