"""Publishing changed rows to serving processes over Kafka (online updates).

.. code-block:: python

    import hierarchical_parameter_server as hps

    # In the training loop, after a step changed some rows of table "t0" of model "demo":
    delivered = hps.publish("127.0.0.1:9092", "demo", "t0", changed_ids, table_variable_rows)

The rows go to topic ``hps_et.<model>.<table>`` in HPS's update format (``HCTR`` header, value size, key and
value records; keys grouped by HPS's partition mixer, one Kafka partition per group), through the C API
(``hps_publish`` in ``libhps.so``). Every process that serves the model with an ``update_source`` takes them into
its databases and overwrites the keys its caches hold.
"""

import ctypes

import numpy as np

from hierarchical_parameter_server import _capi


def _as_numpy(value, name):
    """A NumPy view or copy of a NumPy array, TensorFlow tensor or variable, PyTorch tensor, or sequence."""
    module = type(value).__module__ or ""
    if module.startswith("torch"):
        return value.detach().cpu().numpy()
    if hasattr(value, "numpy") and callable(value.numpy):
        return value.numpy()
    try:
        return np.asarray(value)
    except Exception as e:  # pragma: no cover - numpy's own message is kept
        raise TypeError("%s: cannot be converted to an array: %s" % (name, e)) from e


def publish(brokers, model, table, keys, vectors, timeout_ms=30000):
    """Posts ``len(keys)`` rows of table ``table`` of model ``model`` to the Kafka ``brokers``
    (``"host:port[,host:port]"``) and waits until the brokers acknowledged them.

    ``keys``: integer ids, shape ``[n]``; ``vectors``: shape ``[n, dim]`` (any float dtype; sent as float32).
    Both may be NumPy arrays, TensorFlow tensors or variables, PyTorch tensors, or sequences.

    Returns the number of rows the brokers acknowledged (``n``). Raises ``ValueError`` naming the argument
    for bad names or shapes, ``RuntimeError`` (``HPSRuntimeError``, ``HPS_ERROR_KAFKA``) when the brokers
    did not acknowledge every row within ``timeout_ms``.
    """
    for name, text in (("brokers", brokers), ("model", model), ("table", table)):
        if not isinstance(text, str) or not text:
            raise ValueError("publish: %s must be a non-empty string, got %r" % (name, text))
    keys = _as_numpy(keys, "keys")
    vectors = _as_numpy(vectors, "vectors")
    if keys.ndim != 1:
        raise ValueError("publish: keys must be 1-D, got shape %s" % (keys.shape,))
    if keys.dtype.kind not in "iu":
        raise ValueError("publish: keys must be integers, got dtype %s" % keys.dtype)
    if keys.dtype.kind == "u" and keys.size and keys.max() > np.iinfo(np.int64).max:
        raise ValueError("publish: key %d does not fit int64" % keys.max())
    if vectors.ndim != 2 or vectors.shape[0] != keys.shape[0] or vectors.shape[1] < 1:
        raise ValueError("publish: vectors must have shape [%d, dim], got %s" % (keys.shape[0], vectors.shape))
    if vectors.dtype.kind != "f":
        raise ValueError("publish: vectors must be floating point, got dtype %s" % vectors.dtype)
    keys = np.ascontiguousarray(keys, dtype=np.int64)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    delivered = ctypes.c_int64(0)
    status = _capi.lib().hps_publish(
        brokers.encode(), model.encode(), table.encode(), keys.ctypes.data, keys.shape[0], vectors.ctypes.data,
        vectors.shape[1], int(timeout_ms), ctypes.byref(delivered))
    _capi.check(status, "publish %d rows of %s.%s to %s (%d delivered)" % (keys.shape[0], model, table, brokers, delivered.value))
    return int(delivered.value)
