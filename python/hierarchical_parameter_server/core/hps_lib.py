"""Loads the HPS op library (``libhierarchical_parameter_server.so``) and exposes its ops.

``init`` and ``lookup`` are the generated wrappers of the ops ``Init`` and ``Lookup``, whose inputs,
outputs and attributes are those of NVIDIA's plugin; ``max_keys_per_lookup`` wraps ``MaxKeysPerLookup``, this
package's own op: the most keys one ``Lookup`` of a table accepts.

The library is loaded from ``$HPS_LIBRARY_PATH`` (a file, or a directory holding it) when set, else only from
this package's own ``lib/`` directory, so a stale copy elsewhere is never picked.
"""

import ctypes
import os
import warnings

import tensorflow as tf

LIBRARY_NAME = "libhierarchical_parameter_server.so"

#: TensorFlow versions this package is tested with (inclusive, major.minor).
TESTED_TF_VERSIONS = ((2, 16), (2, 21))


def in_tensorflow2():
    """Whether the running TensorFlow is 2.x."""
    return tf.__version__.startswith("2")


def _tf_version():
    parts = tf.__version__.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


def _check_tf_version():
    version = _tf_version()
    low, high = TESTED_TF_VERSIONS
    if version is None or not (low <= version <= high):
        warnings.warn(
            "hierarchical_parameter_server is tested with TensorFlow %d.%d to %d.%d; this is TensorFlow %s. "
            "The op library uses only TensorFlow's stable C API, so it will likely work, but it is untested."
            % (low + high + (tf.__version__,)),
            RuntimeWarning,
            stacklevel=3,
        )


def _candidates():
    env = os.environ.get("HPS_LIBRARY_PATH")
    if env:
        yield os.path.join(env, LIBRARY_NAME) if os.path.isdir(env) else env
    # Only this package's own folder: a stale copy elsewhere (/usr/local/lib, another site-packages) is never picked.
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    yield os.path.join(here, "lib", LIBRARY_NAME)


def library_path():
    """The path of the op library this process loads (raises FileNotFoundError if there is none)."""
    searched = []
    for path in _candidates():
        if path in searched:
            continue
        searched.append(path)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        "Could not find %s. Searched: %s. Build it with `pip install .` in the HPS repository "
        "(or `swift build -c release --product hierarchical_parameter_server`) and/or set HPS_LIBRARY_PATH."
        % (LIBRARY_NAME, ", ".join(searched))
    )


def _expose_tensorflow_c_api():
    """Makes TensorFlow's C API (the TF_* functions in libtensorflow_framework.so.2) visible to libraries loaded
    later. The op library calls only that API and, like every custom-op library, does not link a particular
    TensorFlow build. TensorFlow 2.21 makes those symbols global when it is imported; 2.16 keeps them local,
    where the op library's TF_* references do not resolve (tests/wheel checks both ends of the range). Loading the framework library again
    with RTLD_GLOBAL (it is already loaded: this only widens its visibility) makes the same op library work with
    every version of the declared range."""
    directory = os.path.dirname(os.path.abspath(tf.__file__))
    framework = os.path.join(directory, "libtensorflow_framework.so.2")
    if os.path.isfile(framework):
        ctypes.CDLL(framework, mode=ctypes.RTLD_GLOBAL)


_check_tf_version()
_expose_tensorflow_c_api()
hps_ops = tf.load_op_library(library_path())

init = hps_ops.init
lookup = hps_ops.lookup
max_keys_per_lookup = hps_ops.max_keys_per_lookup
