"""Named defaults of every compression method, in one place."""

from __future__ import annotations

#: Compression ratio of a method given no target.
DEFAULT_RATIO = 64.0
#: Accepted relative deviation of a neural or hybrid file from its ratio target.
NEURAL_RTOL = 0.02
#: Accepted relative deviation of a classic codec's file from its ratio target.
CLASSIC_RTOL = 0.03
#: Lowest bit depth of quantised network weights (at least 255 levels per tensor).
MIN_WEIGHT_BITS = 8.0


def default_target():  # noqa: ANN201 - codecs.base.Target, imported lazily
    """The target of a method given none: :data:`DEFAULT_RATIO` within :data:`NEURAL_RTOL`."""
    from voxfield.codecs.base import Target

    return Target.ratio(DEFAULT_RATIO, rtol=NEURAL_RTOL)
