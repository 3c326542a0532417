"""Sub-packages that share a name with an API function (``voxfield.compress``,
``voxfield.denoise``, ``voxfield.reconstruct``) are made callable, so that
``voxfield.compress(...)`` and ``from voxfield import compress`` call the function whether
or not the sub-package has been imported (importing a sub-package binds its name on
:mod:`voxfield`, shadowing a function of the same name)."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class CallableModule(types.ModuleType):
    """A package module whose call forwards to ``voxfield.api.<its short name>``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        api = importlib.import_module("voxfield.api")
        return getattr(api, self.__name__.rsplit(".", 1)[-1])(*args, **kwargs)


def make_callable(module_name: str) -> None:
    """Turn the already-imported package ``module_name`` into a :class:`CallableModule`."""
    sys.modules[module_name].__class__ = CallableModule
