"""The registry of compression methods: every way of writing a ``.vxf`` file is a
:class:`Method`, found by name here and nowhere else.

A method is one module that subclasses :class:`Method` and registers it::

    from voxfield.compress.registry import Method, register_method

    @register_method("toy")
    class Toy(Method):
        Config = ToyConfig                          # a dataclass of named defaults
        def encode(self, vol, target, config, *, progress=None): ...   # -> (.vxf bytes, report)
        def decode(self, reader): ...                # -> Volume
        def describe(self, report): ...              # -> one line

Methods of other packages register through the entry-point group ``voxfield.methods``
(``toy = "my_package.toy_method"``: the module, or the class itself); they are loaded the
first time a name is not found among the built-in ones. The built-in methods are listed
below by module, so that looking one up imports only that module (and torch only when a
neural method is used).

The name a method registers is the ``method.name`` its files carry in their header, so
decoding dispatches on it too (:func:`method_for_header`).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from voxfield.compress.defaults import DEFAULT_RATIO  # noqa: F401 - re-exported
from voxfield.errors import FormatError, OptionError

if TYPE_CHECKING:
    from voxfield.codecs.base import Target
    from voxfield.compress.container import VxfReader
    from voxfield.io.volume import Volume

#: Entry-point group through which other packages add methods.
ENTRY_POINT_GROUP = "voxfield.methods"

#: Built-in methods: name -> module that registers it (imported on first use).
BUILTIN: dict[str, str] = {
    "classic": "voxfield.compress.methods.classic_codec",
    "sci": "voxfield.compress.methods.neural_fields",
    "siren": "voxfield.compress.methods.neural_fields",
    "grid": "voxfield.compress.methods.latent_grid",
    "cryo-pe": "voxfield.compress.methods.cryo_pe_field",
    "cryo-pe-set": "voxfield.compress.methods.cryo_pe_sets",
    "hybrid": "voxfield.compress.methods.hybrid_residual",
    "auto": "voxfield.compress.methods.auto_choice",
}

#: Progress callback: ``progress(stage, fraction)``.
Progress = Callable[[str, float], None]


class Method:
    """A compression method. Subclasses set ``Config`` (a dataclass; None: no settings)
    and implement :meth:`encode` and :meth:`decode`; :meth:`open_field` (random access),
    :meth:`describe`, :meth:`summary` and :meth:`check_header` have defaults.

    ``kind`` says how the command line offers it: ``"neural"`` (``--method NAME``),
    ``"hybrid"``, ``"classic"`` (``--codec``), or ``"set"`` (``compress-set``)."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "neural"
    Config: ClassVar[type | None] = None

    # ------------------------------------------------------------------ configuration
    def config(self, **settings: Any) -> Any:
        """The validated configuration: ``Config`` with ``settings`` over its defaults.
        Unknown keys are an :class:`OptionError` naming the known ones."""
        if self.Config is None:
            if settings:
                raise OptionError(f"method {self.name!r} takes no settings (got {', '.join(sorted(settings))})")
            return None
        preset = getattr(self.Config, "preset", None)
        if preset is not None:
            cfg = preset(self.name, **settings)
        else:
            known = {f.name for f in dataclasses.fields(self.Config)}
            unknown = sorted(set(settings) - known)
            if unknown:
                raise OptionError(f"unknown setting(s) {', '.join(unknown)} for method {self.name!r} "
                                  f"(known: {', '.join(sorted(known))})")
            cfg = self.Config(**settings)
        validate = getattr(cfg, "validate", None)
        if validate is not None:
            validate()
        return cfg

    # ------------------------------------------------------------------ encoding
    def encode(self, vol: Volume, target: Target | None, config: Any, *, progress: Progress | None = None,
               **options: Any) -> tuple[bytes, Any]:
        """The ``.vxf`` bytes of ``vol`` at ``target`` (None: the method's default) and a
        report of what was done."""
        raise NotImplementedError

    def describe(self, report: Any) -> str:
        """One line about an encode, for the command's summary."""
        return self.name

    def no_options(self, options: dict[str, Any]) -> None:
        """Refuse encode options this method does not take (e.g. ``guide_mask``)."""
        if options:
            raise OptionError(f"method {self.name!r} does not take {', '.join(sorted(options))} "
                              "(guidance masks go with sci, siren and hybrid)")

    # ------------------------------------------------------------------ decoding
    def decode(self, reader: VxfReader) -> Volume:
        """The whole volume of an open file written by this method."""
        raise NotImplementedError

    def open_field(self, reader: VxfReader) -> tuple[Any, Any] | None:
        """``(field, layout)`` for random access (see :mod:`voxfield.compress.reader`):
        ``field`` evaluates a grid of voxel indices (``evaluate_grid``) or points
        (``evaluate_points``), None for a constant volume. Return None (the default) when
        the method can only decode whole volumes."""
        return None

    def open_region(self, reader: VxfReader) -> Any | None:
        """An object whose ``region(index_arrays)`` decodes the voxels at the outer product
        of sorted index arrays, for methods that decode regions without a field (hybrid);
        None (the default) otherwise."""
        return None

    def summary(self, reader: VxfReader) -> dict[str, Any]:
        """What ``voxfield info`` shows of the method (from the header; no decoding)."""
        return {k: v for k, v in reader.header.get("method", {}).items() if k != "name"}

    def check_header(self, method: dict[str, Any], spec: Any, path: Any) -> None:
        """Method-specific header checks beyond :mod:`voxfield.compress.schema`'s generic
        ones (raise :class:`FormatError`); run when a file is opened."""


_M = TypeVar("_M", bound=type[Method])
_REGISTERED: dict[str, type[Method]] = {}
_entry_points_loaded = False


def register_method(name: str, *, replace: bool = False) -> Callable[[_M], _M]:
    """Class decorator: register a :class:`Method` subclass under ``name``.

    Registering a name twice is an error unless ``replace`` (tests use it)."""
    if not name or not isinstance(name, str):
        raise ValueError("a method needs a non-empty name")

    def deco(cls: _M) -> _M:
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise TypeError(f"{cls!r} is not a voxfield.compress.registry.Method subclass")
        if name in _REGISTERED and _REGISTERED[name] is not cls and not replace:
            raise ValueError(f"method {name!r} is already registered by {_REGISTERED[name].__module__}")
        cls.name = name
        _REGISTERED[name] = cls
        return cls

    return deco


def unregister_method(name: str) -> None:
    """Forget a registered method (for tests)."""
    _REGISTERED.pop(name, None)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTERED or ep.name in BUILTIN:
            continue
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plug-in must not break voxfield
            import warnings

            warnings.warn(f"cannot load voxfield method {ep.name!r} from {ep.value}: {exc}", UserWarning,
                          stacklevel=3)
            continue
        if isinstance(obj, type) and issubclass(obj, Method) and ep.name not in _REGISTERED:
            register_method(ep.name)(obj)


def get_method(name: str) -> Method:
    """The method registered as ``name`` (built-in, registered, or from an entry point).
    Unknown: :class:`OptionError` listing the known names."""
    cls = _REGISTERED.get(name)
    if cls is None and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
        cls = _REGISTERED.get(name)
    if cls is None:
        _load_entry_points()
        cls = _REGISTERED.get(name)
    if cls is None:
        raise OptionError(f"unknown method {name!r} (known: {', '.join(method_names())})")
    return cls()


def method_names(kind: str | None = None) -> list[str]:
    """Names of the known methods (of one ``kind`` when given), built-in ones first.
    Listing by kind imports the methods' modules (not torch)."""
    _load_entry_points()
    names = list(dict.fromkeys([*BUILTIN, *_REGISTERED]))
    if kind is None:
        return names
    return [n for n in names if type(get_method(n)).kind == kind]


def method_for_header(header: dict[str, Any], path: Any = None) -> Method:
    """The method that wrote a file, from its header's ``method.name``. Unknown: a
    :class:`FormatError` naming the file and the methods this voxfield decodes."""
    name = header.get("method", {}).get("name") if isinstance(header.get("method"), dict) else None
    try:
        return get_method(str(name))
    except OptionError:
        raise FormatError(f"unknown compression method {name!r} (this voxfield decodes: "
                          f"{', '.join(method_names())})", path) from None


def header_check(name: str) -> Callable[[dict[str, Any], Any, Any], None] | None:
    """The :meth:`Method.check_header` of a built-in or already registered method (None
    otherwise); the schema uses it for methods it does not know itself."""
    cls = _REGISTERED.get(name)
    if cls is None and name in BUILTIN:  # a built-in method not imported yet
        importlib.import_module(BUILTIN[name])
        cls = _REGISTERED.get(name)
    return None if cls is None else cls().check_header
