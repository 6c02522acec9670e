"""Loads the native extension octavo._C.

The extension links OpenBLAS from the scipy-openblas32 wheel; that library lives in another
package's folder, so it is loaded first (globally) for the extension to find it by soname.
"""

from __future__ import annotations

import ctypes
import os


def _preload_openblas() -> None:
    try:
        import scipy_openblas32
    except ImportError:  # built against a system BLAS instead
        return
    lib_dir = scipy_openblas32.get_lib_dir()
    name = f"lib{scipy_openblas32.get_library()}.so"
    path = os.path.join(lib_dir, name)
    if os.path.exists(path):
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


_preload_openblas()

from octavo import _C  # noqa: E402

__all__ = ["_C"]
