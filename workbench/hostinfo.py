"""Where a measurement was taken: host name, CPU model and key flags, cores, runtime versions.

Every study record carries this (``Record.host``) so studies from several machines or Dask
workers can be merged and grouped by host.
"""

from __future__ import annotations

import functools
import platform
import socket
from importlib import metadata

from .cpu import cpu_info

#: distributions whose versions change what a measurement means
_RUNTIMES = ("onnxruntime", "openvino", "onnx", "numpy")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def host_info() -> dict[str, object]:
    """This machine as plain JSON-ready data (tuples, not lists, so it round-trips equal).

    Keys: ``name`` (host name), ``cpu`` (model), ``arch``, ``cores``, ``flags`` (the
    precision-relevant ISA flags), ``python`` and one key per installed runtime version.
    """
    return dict(_host_info())


@functools.cache
def _host_info() -> dict[str, object]:
    cpu = cpu_info()
    info: dict[str, object] = {
        "name": socket.gethostname(),
        "cpu": cpu.model,
        "arch": cpu.arch,
        "cores": cpu.cores,
        "flags": tuple(cpu.key_flags),
        "python": platform.python_version(),
    }
    for dist in _RUNTIMES:
        v = _version(dist)
        if v is not None:
            info[dist] = v
    return info


def host_name() -> str:
    """The host name timing locks and reports group by."""
    return str(host_info()["name"])
