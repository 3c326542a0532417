"""The rate controller (voxfield.compress.rate): one goal, one landing loop."""

from __future__ import annotations

import numpy as np
import pytest

from voxfield.codecs.base import Target
from voxfield.compress import rate
from voxfield.errors import OptionError, TargetNotMet


def test_size_goal_of_ratio_keeps_the_ratio_within_rtol() -> None:
    g = rate.SizeGoal.of(Target.ratio(64, rtol=0.03), 64_000, "toy")
    assert g.goal == pytest.approx(1000.0)
    assert g.ratio == pytest.approx(64.0)
    # the tolerance is on the ratio: a file 3 % under the goal would be a ratio 3.09 % over it
    assert g.tol == pytest.approx(1000 * 0.03 / 1.03)
    assert g.hit(1029) and g.hit(971) and not g.hit(1030) and not g.hit(970)
    assert g.room(100) == pytest.approx(900.0)
    b = rate.SizeGoal.of(Target.nbytes(500, rtol=0.1), 10_000, "toy")
    assert (b.goal, b.tol) == (500.0, pytest.approx(50.0))


@pytest.mark.parametrize("target", [Target.max_abs_error(0.1), Target("psnr", 40.0), Target("lossless")])
def test_size_goal_refuses_non_size_targets(target: Target) -> None:
    with pytest.raises(OptionError, match="toy method aims for a ratio or a size"):
        rate.SizeGoal.of(target, 1000, "toy")


def test_errors_name_the_method_and_the_numbers() -> None:
    g = rate.SizeGoal.of(Target.ratio(100), 100_000, "toy")
    err = g.out_of_reach(900, 200)
    assert isinstance(err, TargetNotMet) and "toy" in str(err) and "1000 bytes" in str(err)
    assert "about 90.91" in str(err)  # 100000 / (900 + 200)
    miss = g.missed(b"x" * 1200)
    assert miss.best == b"x" * 1200 and miss.achieved == pytest.approx(100_000 / 1200)


def test_land_file_uses_the_measured_header() -> None:
    """The header grows with the payload (as a JSON header does): the loop gives the payload
    coder the room the *real* file leaves and stops as soon as the file is within tolerance."""
    g = rate.SizeGoal.of(Target.nbytes(1000, rtol=0.01), 10**6, "toy")
    rooms: list[float] = []

    def make(n: int) -> tuple[bytes, int]:
        header = 100 + n // 10  # unknown to the planner
        return b"h" * header + b"p" * n, n

    def reland(room: float) -> int | None:
        rooms.append(room)
        return int(room)

    blob, state = rate.land_file(make, reland, 900, g)
    assert g.hit(len(blob)) and len(blob) == 100 + state // 10 + state
    assert rooms and rooms[0] == pytest.approx(1000 - (100 + 90))  # goal less the measured header
    assert len(rooms) <= 3


def test_land_file_returns_the_state_of_the_last_file_and_stops() -> None:
    g = rate.SizeGoal.of(Target.nbytes(1000, rtol=0.01), 10**6, "toy")
    calls = {"make": 0, "reland": 0}

    def make(n: int) -> tuple[bytes, int]:
        calls["make"] += 1
        return b"p" * (n + 500), n  # always 500 bytes over: never lands

    def reland(room: float) -> int:
        calls["reland"] += 1
        return 2000  # a coder that cannot follow

    blob, state = rate.land_file(make, reland, 900, g, tries=3)
    assert calls == {"make": 3, "reland": 2}  # no wasted re-code after the last file
    assert len(blob) == state + 500 and not g.hit(len(blob))
    # a coder that gives up ends the loop at once
    blob, state = rate.land_file(make, lambda room: None, 900, g)
    assert state == 900 and len(blob) == 1400


def test_land_knob_and_bits_bisect_a_monotone_size() -> None:
    def encode_at(k: float) -> tuple[bytes, float]:
        return b"x" * int(100 * k), k

    k, payload, side = rate.land_knob(encode_at, 555, 10, 1.0, 10.0)
    assert payload is not None and abs(len(payload) - 555) <= 10 and side == k
    # even the lowest setting overshoots: None, the caller plans smaller
    assert rate.land_knob(encode_at, 50, 4, 1.0, 10.0)[1] is None
    # even the highest leaves room: the highest, the caller may plan bigger
    k, payload, _ = rate.land_knob(encode_at, 5000, 10, 1.0, 10.0)
    assert k == 10.0 and len(payload) == 1000
    bits, payload, _ = rate.land_bits(lambda b: (b"x" * int(64 * b), b), 64 * 12.5, 8)
    assert rate.MIN_BITS <= bits <= 16 and abs(len(payload) - 800) <= 8


def test_land_weights_relands_the_bit_depth() -> None:
    g = rate.SizeGoal.of(Target.nbytes(1000, rtol=0.02), 10**6, "toy")
    weights = np.linspace(-1, 1, 600)  # 1200 bytes at 16 bits: too many

    def encode_at(bits: float) -> tuple[bytes, float]:
        return b"w" * int(len(weights) * bits / 8), bits

    def make(bits: float, payload: bytes, codes: float) -> bytes:
        return b"h" * 120 + payload  # a header the planner under-estimated

    blob, bits, payload, codes = rate.land_weights(make, encode_at, 16.0, *encode_at(16.0), g)
    assert g.hit(len(blob)) and codes == bits and len(blob) == 120 + len(payload)
    assert 11 < bits < 12.5  # (1000 - 120) * 8 / 600 = 11.7
