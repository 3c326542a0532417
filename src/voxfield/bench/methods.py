"""What a benchmark row runs: a classic codec (``sz3``) or a neural method, optionally
with settings (``sci``, ``sci[max_blocks=50,deblock=h264]``, ``siren[optimizer=adam,lr=1e-3]``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from voxfield.codecs.base import Target
from voxfield.codecs.registry import CODECS, get_codec
from voxfield.compress.api import resolve_method
from voxfield.compress.defaults import NEURAL_RTOL
from voxfield.compress.registry import Method, get_method
from voxfield.errors import OptionError
from voxfield.io.volume import Volume


def _value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method name: ``label`` as written, ``name`` the codec/method, ``settings``."""

    label: str
    name: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def classic(self) -> bool:
        """A classic codec of :mod:`voxfield.codecs` (``sz3``, ``zstd[level=3]``)."""
        return self.name in CODECS

    def resolve(self) -> tuple[Method, Any]:
        """The registered method and its validated configuration (every benchmark row is
        encoded through :mod:`voxfield.compress.registry`, like ``voxfield compress``)."""
        reg, implied = resolve_method(None, self.name) if self.classic else resolve_method(self.name, None)
        method = get_method(reg)
        return method, method.config(**{**implied, **self.settings})

    @property
    def hybrid(self) -> bool:
        return not self.classic and get_method(resolve_method(self.name, None)[0]).kind == "hybrid"

    @property
    def neural(self) -> bool:
        """Fitted at encode time (every registered method but the classic codecs)."""
        return not self.classic

    @property
    def lossless(self) -> bool:
        return not self.neural and get_codec(self.name).lossless

    @classmethod
    def parse(cls, text: str) -> MethodSpec:
        text = text.strip()
        name, sep, rest = text.partition("[")
        settings: dict[str, Any] = {}
        if sep:
            if not rest.endswith("]"):
                raise OptionError(f"method {text!r}: settings go in brackets, e.g. sci[fr=1.5,max_blocks=8]")
            for item in filter(None, (p.strip() for p in rest[:-1].split(","))):
                key, eq, val = item.partition("=")
                if not eq:
                    raise OptionError(f"method {text!r}: setting {item!r} is not key=value")
                settings[key.strip()] = _value(val)
        spec = cls(text, name.strip(), settings)
        spec.validate()
        return spec

    def validate(self) -> None:
        self.resolve()

    def encode(self, vol: Volume, target: Target) -> tuple[bytes, Any]:
        """Compress ``vol`` to ``.vxf`` bytes (raises TargetNotMet like the codecs); returns
        the bytes and the neural fit report (None for classic codecs)."""
        method, config = self.resolve()
        if self.classic:
            return method.encode(vol, target, config)[0], None
        if self.hybrid:  # the classic codecs' target, so "prior alone" is the classic run's own file
            return method.encode(vol, target, config)
        t = Target(target.kind, target.value, min(target.rtol, NEURAL_RTOL)) if target.kind == "ratio" else target
        return method.encode(vol, t, config)


def parse_methods(text: str) -> list[str]:
    """Split a comma-separated method list, keeping commas inside ``[...]`` settings:
    ``parse_methods("sz3,sci[fr=1.5,max_blocks=8]")`` -> ``["sz3", "sci[fr=1.5,max_blocks=8]"]``.
    :class:`OptionError` for an empty list."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    out = [o for o in out if o]
    if not out:
        raise OptionError("empty codec list")
    return out


def with_settings(text: str, **extra: Any) -> str:
    """``text`` with ``extra`` settings added when it names a neural method (classic codecs
    are returned unchanged): ``with_settings("sci[fr=1.0]", time_budget=60)`` ->
    ``"sci[fr=1.0,time_budget=60]"``. Used by benchmark scripts for a shared training budget."""
    spec = MethodSpec.parse(text)
    if not spec.neural or not extra:
        return text
    merged = {**spec.settings, **{k: v for k, v in extra.items() if v is not None}}
    if not merged:
        return spec.name
    text_of = {k: f"{v:g}" if isinstance(v, float) else str(v) for k, v in merged.items()}
    return f"{spec.name}[{','.join(f'{k}={v}' for k, v in text_of.items())}]"
