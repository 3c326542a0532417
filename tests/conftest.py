"""Shared fixtures: where the real data lives, and small helpers.

Tests that need ``../shared/data`` (the project's real-data collection) take the
``shared_data`` fixture and are skipped cleanly when it is absent. Set
``VOXFIELD_SHARED_DATA`` to point elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "data"


def _shared_data_dir() -> Path | None:
    env = os.environ.get("VOXFIELD_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(ROOT.parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None


SHARED_DATA = _shared_data_dir()


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``pytest -n N``), share the cores between the workers: torch and the
    BLAS libraries otherwise start one thread per core in every worker, and the oversubscribed
    threads make ``-n 2`` on 2 cores about 6 times slower than a serial run. The thread-count
    variables are set before any test module imports torch, and are inherited by the command
    line subprocesses that tests start."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not workers:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = str(max(1, cores // max(1, int(workers))))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, threads)
    import sys

    if "torch" in sys.modules:  # pragma: no cover - imported by a plugin before this hook
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the real-data collection; skips the test when it is absent."""
    if SHARED_DATA is None:
        pytest.skip("real data (../shared/data) not available")
    return SHARED_DATA


def shared_file(rel: str) -> Path:
    """Path of a file in the real-data collection, or skip the calling test."""
    if SHARED_DATA is None or not (SHARED_DATA / rel).exists():
        pytest.skip(f"real data file {rel} not available")
    return SHARED_DATA / rel


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """Folder of the small real files committed under tests/data."""
    return FIXTURES
