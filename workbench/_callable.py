"""Let a module double as the public function of the same name (``wb.explore``, ``wb.report``).

Importing ``workbench.explore`` binds the *module* to ``workbench.explore``, shadowing the lazily
exported function; making the module callable keeps ``wb.explore(...)`` working either way.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


def make_module_callable(module_name: str, target: str) -> None:
    """Calling module ``module_name`` calls ``target`` ("module.path:function")."""
    mod_path, func = target.split(":")

    class _CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return getattr(importlib.import_module(mod_path), func)(*args, **kwargs)

    sys.modules[module_name].__class__ = _CallableModule
