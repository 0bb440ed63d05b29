"""Devices, capability, affinity and partitioning.

``workbench.devices`` is both this package and the public function ``wb.devices()``.
"""

from .._callable import make_module_callable

make_module_callable(__name__, "workbench.devices.registry:devices")
