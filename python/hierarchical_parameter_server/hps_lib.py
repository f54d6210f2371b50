"""``hierarchical_parameter_server.hps_lib``, where NVIDIA's plugin kept the op wrappers: the same names,
loaded by :mod:`hierarchical_parameter_server.core.hps_lib`."""

from hierarchical_parameter_server.core.hps_lib import (  # noqa: F401
    LIBRARY_NAME,
    TESTED_TF_VERSIONS,
    hps_ops,
    in_tensorflow2,
    init,
    library_path,
    lookup,
)
