"""The ctypes bindings moved to :mod:`hierarchical_parameter_server._capi` (publishing uses them without
PyTorch); this name stays the same module."""

import sys

from hierarchical_parameter_server import _capi

sys.modules[__name__] = _capi
