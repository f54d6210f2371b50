"""The process-wide parameter server of the PyTorch front end, and ``Init``."""

import json
import os
import threading

from hierarchical_parameter_server.torch import _capi

_lock = threading.Lock()
_server = None  # _capi.Server once Init succeeded
_config_path = None  # its configuration, as given (for messages)
_config_realpath = None
_deployed = {}  # model name -> deployed_device_list read from the configuration
_tables = {}  # (model, table, device) -> TableBinding
_checked_configs = set()  # ps_config_file strings of layers that were found to name the server's configuration


class TableBinding:
    """What one lookup of a (model, table, device) needs, resolved once."""

    __slots__ = ("session", "handle", "table", "dim", "max_keys", "int64_keys", "model", "device")

    def __init__(self, session, table):
        self.session = session
        self.handle = session.handle
        self.table = table
        self.dim = session.dimensions[table]
        self.max_keys = session.max_keys[table]
        self.int64_keys = session.int64_keys
        self.model = session.model
        self.device = session.device


def _read_deployed(path):
    """model name -> deployed_device_list, read from the JSON configuration (the C library validated it)."""
    try:
        with open(path) as f:
            config = json.load(f)
        models = config.get("models", [])
        return {m["model"]: [int(d) for d in m.get("deployed_device_list", [0])] or [0] for m in models if "model" in m}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def Init(ps_config_file):
    """Builds this process's parameter server from the HPS JSON configuration ``ps_config_file`` (the same
    ps.json the TensorFlow plugin reads): databases, tables and caches of every model.

    The server is process-wide and built once: calling ``Init`` again with the same file returns at once
    and changes nothing; calling it with another file raises RuntimeError naming both files.

    Returns ``"OK"`` (as the TensorFlow ``hps.Init`` does).
    """
    global _server, _config_path, _config_realpath, _deployed
    if ps_config_file is None or not isinstance(ps_config_file, (str, bytes, os.PathLike)):
        raise ValueError("ps_config_file must be the path of an HPS JSON configuration, got %r" % (ps_config_file,))
    path = os.fsdecode(os.fspath(ps_config_file))
    if not path:
        raise ValueError("ps_config_file is empty: give the path of an HPS JSON configuration")
    realpath = os.path.realpath(path)
    with _lock:
        if _server is not None:
            if realpath != _config_realpath:
                raise RuntimeError(
                    "the HPS server of this process was already initialised from %s; it cannot be initialised "
                    "again from %s (one configuration per process)" % (_config_path, path)
                )
            return "OK"
        server = _capi.Server(path)
        _deployed = _read_deployed(path)
        _config_path, _config_realpath = path, realpath
        _server = server
    return "OK"


def is_initialized():
    """Whether ``Init`` has built this process's server."""
    return _server is not None


def server(ps_config_file=None):
    """The process's server; with ``ps_config_file`` given, ``Init(ps_config_file)`` first."""
    if ps_config_file:
        if _server is None or os.path.realpath(ps_config_file) != _config_realpath:
            Init(ps_config_file)
    elif _server is None:
        raise RuntimeError(
            "hierarchical_parameter_server.torch is not initialised: call "
            "hierarchical_parameter_server.torch.Init(ps_config_file) first, or build the layer with ps_config_file="
        )
    return _server


def ensure(ps_config_file=None):
    """``server(ps_config_file)``, remembering which configuration strings were checked already."""
    if ps_config_file and ps_config_file in _checked_configs and _server is not None:
        return _server
    srv = server(ps_config_file)
    if ps_config_file:
        _checked_configs.add(ps_config_file)
    return srv


def host_device(model):
    """The session device that serves host-memory (CPU tensor) lookups of ``model``: the first entry of its
    deployed_device_list."""
    devices = _deployed.get(model)
    return devices[0] if devices else 0


def binding(model, table, device, ps_config_file=None):
    """The TableBinding of ``table`` of ``model`` on session device ``device`` (cached)."""
    srv = ensure(ps_config_file)
    key = (model, table, device)
    found = _tables.get(key)
    if found is not None:
        return found
    try:
        session = srv.session(model, device)
    except _capi.HPSError as e:
        if e.status == _capi.HPS_ERROR_UNKNOWN_MODEL:
            raise _capi.HPSValueError(
                e.status, "no model %r in %s (models: %s)" % (model, _config_path, ", ".join(srv.model_names())),
            ) from None
        if e.status == _capi.HPS_ERROR_NO_DEVICE:
            raise _capi.HPSValueError(
                e.status,
                "device %d is not in the deployed_device_list %s of model %r (%s): %s"
                % (device, _deployed.get(model, "?"), model, _config_path, e.message),
            ) from None
        raise
    if not 0 <= table < session.table_count:
        raise _capi.HPSValueError(
            _capi.HPS_ERROR_UNKNOWN_TABLE,
            "table_id %d is out of range: model %r has %d table(s)" % (table, model, session.table_count),
        )
    found = TableBinding(session, table)
    _tables[key] = found
    return found


def statistics():
    """Counters of the server since Init (lookups, keys, unique_keys, cache_hits, cache_misses, volatile_hits,
    persistent_hits, defaults)."""
    return server().statistics()


def wait():
    """Waits until the background cache inserts of every session are done (hit_rate_threshold below 1)."""
    server().wait()
