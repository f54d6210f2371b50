"""``hps.Init``: builds the process-wide parameter server (once) for every model of a config file."""

import sys

import tensorflow as tf

from hierarchical_parameter_server.core import hps_lib

_REQUIRED = ("global_batch_size", "ps_config_file")

# After an eager Init returned "OK", eager lookups reuse this status instead of running Init again.
_eager_ok_status = None


def _visible_devices(num_replicas):
    """Indices of the visible GPUs, as HPS passes them; ``0..num_replicas-1`` on a machine without GPUs
    (this build serves lookups from host memory, one session per replica)."""
    gpus = tf.config.get_visible_devices("GPU")
    if gpus:
        return [int(gpu.name.split(":")[-1]) for gpu in gpus]
    return list(range(num_replicas))


def _supported_strategy(strategy):
    supported = [tf.distribute.MirroredStrategy, tf.distribute.OneDeviceStrategy]
    multi_worker = getattr(tf.distribute, "MultiWorkerMirroredStrategy", None) or getattr(
        tf.distribute.experimental, "MultiWorkerMirroredStrategy", None
    )
    if multi_worker is not None:
        supported.append(multi_worker)
    if not isinstance(strategy, tuple(supported)):
        raise RuntimeError("This strategy type is not supported yet.")


def _init_op(replica_id, num_replicas, global_batch_size, ps_config_file):
    if isinstance(num_replicas, int):
        visible = _visible_devices(num_replicas)
    else:  # a tensor: only happens with unusual replica contexts; fall back to the GPU list or one device
        visible = _visible_devices(1)
    return hps_lib.init(
        global_replica_id=tf.cast(replica_id, tf.int32),
        num_replicas_in_sync=tf.cast(num_replicas, tf.int32),
        visible_devices=tf.constant(visible, dtype=tf.int32),
        ps_config_file=ps_config_file,
        global_batch_size=int(global_batch_size),
    )


def _replica_init(global_batch_size, ps_config_file):
    ctx = tf.distribute.get_replica_context()
    return _init_op(ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync, global_batch_size, ps_config_file)


def init_status(global_batch_size, ps_config_file):
    """The status tensor of an ``Init`` op for the current device/replica (used by the layers, which
    initialize lazily: the op returns "OK" at once when the server already exists)."""
    global _eager_ok_status
    if tf.executing_eagerly() and _eager_ok_status is not None:
        return _eager_ok_status
    if tf.distribute.has_strategy():
        strategy = tf.distribute.get_strategy()
        _supported_strategy(strategy)
        if tf.distribute.in_cross_replica_context():
            status = _init_op(0, strategy.num_replicas_in_sync, global_batch_size, ps_config_file)
        else:
            status = _replica_init(global_batch_size, ps_config_file)
    elif "horovod.tensorflow" in sys.modules:
        import horovod.tensorflow as hvd

        status = _init_op(hvd.local_rank(), hvd.size(), global_batch_size, ps_config_file)
    else:
        status = _init_op(0, 1, global_batch_size, ps_config_file)
    if tf.executing_eagerly() and not tf.distribute.has_strategy():
        _eager_ok_status = status
    return status


def _as_python(status):
    if isinstance(status, tf.Tensor) and hasattr(status, "numpy"):
        value = status.numpy()
        return value.decode() if isinstance(value, bytes) else value
    return status


def Init(**kwargs):
    """Initializes the HPS for all the models of ``ps_config_file``. Abbreviated as ``hps.Init(**kwargs)``.

    Keyword arguments:
        global_batch_size (int): the global batch size; ``global_batch_size / num_replicas`` must not exceed
            any model's ``max_batch_size``.
        ps_config_file (str): the HPS JSON configuration file.

    The parameter server is built once per process (thread-safe); later calls, with any arguments, return
    "OK" and change nothing. Under a ``tf.distribute`` strategy call it inside ``strategy.scope()``; each
    replica's id selects its device in ``deployed_device_list``, which must be ``[0 .. replicas-1]``.

    Returns:
        "OK" (a ``str`` when run eagerly on one device; the status tensor inside a ``tf.function``; the
        per-replica statuses under a strategy). Failures raise ``tf.errors.OpError`` naming the problem.
    """
    missing = [key for key in _REQUIRED if key not in kwargs]
    if missing:
        raise TypeError("hps.Init() missing required keyword argument(s): %s" % ", ".join(missing))
    global_batch_size = kwargs["global_batch_size"]
    ps_config_file = kwargs["ps_config_file"]
    if not isinstance(global_batch_size, int) or isinstance(global_batch_size, bool):
        raise TypeError("global_batch_size must be an int, got %r" % (global_batch_size,))
    if not isinstance(ps_config_file, str):
        ps_config_file = str(ps_config_file)  # e.g. a pathlib.Path

    if tf.distribute.has_strategy():
        strategy = tf.distribute.get_strategy()
        _supported_strategy(strategy)
        if tf.distribute.in_cross_replica_context():

            @tf.function
            def _run():
                return strategy.run(_replica_init, args=(global_batch_size, ps_config_file))

            results = _run()
            values = getattr(results, "values", (results,))
            return tuple(_as_python(v) for v in values)
        return init_status(global_batch_size, ps_config_file)

    status = init_status(global_batch_size, ps_config_file)
    return _as_python(status) if tf.executing_eagerly() else status
