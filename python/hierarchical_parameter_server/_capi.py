"""ctypes bindings of the HPS C API (``include/hps.h``, ``libhps.so``).

Every call that can fail goes through :func:`check`, which turns a non-zero status into a Python exception
carrying ``hps_last_error()``: :class:`HPSValueError` (a ``ValueError``) for argument problems,
:class:`HPSRuntimeError` (a ``RuntimeError``) for everything else. ctypes releases the GIL around each
call, so lookups from several Python threads run in parallel.

The library is looked up at ``$HPS_C_LIBRARY`` (a file, or a directory holding ``libhps.so``) and otherwise
only in this package's ``lib/`` folder.
"""

import ctypes
import os
import threading

LIBRARY_NAME = "libhps.so"

#: The major version of hps.h these bindings were written against.
API_VERSION_MAJOR = 1

HPS_MEMORY_HOST = 0
HPS_MEMORY_DEVICE = 1

HPS_OK = 0
HPS_ERROR_INVALID_ARGUMENT = 1
HPS_ERROR_CONFIG = 2
HPS_ERROR_TABLE_FILES = 3
HPS_ERROR_UNKNOWN_MODEL = 4
HPS_ERROR_UNKNOWN_TABLE = 5
HPS_ERROR_TOO_MANY_KEYS = 6
HPS_ERROR_KEY_WIDTH = 7
HPS_ERROR_NO_DEVICE = 8
HPS_ERROR_CUDA = 9
HPS_ERROR_DATABASE = 10
HPS_ERROR_BUSY = 11
HPS_ERROR_KAFKA = 12
HPS_ERROR_INTERNAL = 99

STATUS_NAMES = {
    HPS_OK: "HPS_OK",
    HPS_ERROR_INVALID_ARGUMENT: "HPS_ERROR_INVALID_ARGUMENT",
    HPS_ERROR_CONFIG: "HPS_ERROR_CONFIG",
    HPS_ERROR_TABLE_FILES: "HPS_ERROR_TABLE_FILES",
    HPS_ERROR_UNKNOWN_MODEL: "HPS_ERROR_UNKNOWN_MODEL",
    HPS_ERROR_UNKNOWN_TABLE: "HPS_ERROR_UNKNOWN_TABLE",
    HPS_ERROR_TOO_MANY_KEYS: "HPS_ERROR_TOO_MANY_KEYS",
    HPS_ERROR_KEY_WIDTH: "HPS_ERROR_KEY_WIDTH",
    HPS_ERROR_NO_DEVICE: "HPS_ERROR_NO_DEVICE",
    HPS_ERROR_CUDA: "HPS_ERROR_CUDA",
    HPS_ERROR_DATABASE: "HPS_ERROR_DATABASE",
    HPS_ERROR_BUSY: "HPS_ERROR_BUSY",
    HPS_ERROR_KAFKA: "HPS_ERROR_KAFKA",
    HPS_ERROR_INTERNAL: "HPS_ERROR_INTERNAL",
}

# Codes that mean the caller passed something wrong (ValueError); the rest are RuntimeError.
ARGUMENT_ERRORS = frozenset({
    HPS_ERROR_INVALID_ARGUMENT,
    HPS_ERROR_UNKNOWN_MODEL,
    HPS_ERROR_UNKNOWN_TABLE,
    HPS_ERROR_TOO_MANY_KEYS,
    HPS_ERROR_KEY_WIDTH,
    HPS_ERROR_NO_DEVICE,
})


class HPSError(Exception):
    """An error returned by the HPS C API. ``status`` is the ``hps_status`` code, ``message`` the text of
    ``hps_last_error()``."""

    def __init__(self, status, message, context=None):
        self.status = status
        self.message = message
        text = message or STATUS_NAMES.get(status, "status %d" % status)
        if context:
            text = "%s: %s" % (context, text)
        super().__init__("%s (%s)" % (text, STATUS_NAMES.get(status, "status %d" % status)))


class HPSValueError(HPSError, ValueError):
    """An argument the C API rejected: unknown model or table, wrong key width, too many keys, a device that
    is not deployed."""


class HPSRuntimeError(HPSError, RuntimeError):
    """A failure of the server: configuration, table files, CUDA, a database, or an internal error."""


class Statistics(ctypes.Structure):
    """``hps_statistics``."""

    _fields_ = [(name, ctypes.c_int64) for name in (
        "lookups", "keys", "unique_keys", "cache_hits", "cache_misses", "volatile_hits", "persistent_hits", "defaults",
    )]

    def as_dict(self):
        return {name: int(getattr(self, name)) for name, _ in self._fields_}


_c_int = ctypes.c_int
_c_i64 = ctypes.c_int64
_c_ptr = ctypes.c_void_p
_c_str = ctypes.c_char_p

# name: (restype, argtypes)
_SIGNATURES = {
    "hps_version": (_c_str, []),
    "hps_api_version": (_c_int, []),
    "hps_last_error": (_c_str, []),
    "hps_status_string": (_c_str, [_c_int]),
    "hps_server_create": (_c_int, [_c_str, ctypes.POINTER(_c_ptr)]),
    "hps_server_destroy": (_c_int, [_c_ptr]),
    "hps_model_count": (_c_int, [_c_ptr]),
    "hps_model_name": (_c_str, [_c_ptr, _c_int]),
    "hps_session_create": (_c_int, [_c_ptr, _c_str, _c_int, ctypes.POINTER(_c_ptr)]),
    "hps_session_destroy": (None, [_c_ptr]),
    "hps_table_count": (_c_int, [_c_ptr]),
    "hps_table_dimension": (_c_int, [_c_ptr, _c_int]),
    "hps_table_max_keys": (_c_i64, [_c_ptr, _c_int]),
    "hps_table_name": (_c_str, [_c_ptr, _c_int]),
    "hps_session_on_gpu": (_c_int, [_c_ptr]),
    "hps_session_int64_keys": (_c_int, [_c_ptr]),
    "hps_lookup": (_c_int, [_c_ptr, _c_int, _c_ptr, _c_i64, _c_ptr, _c_int, _c_ptr]),
    "hps_lookup_i32": (_c_int, [_c_ptr, _c_int, _c_ptr, _c_i64, _c_ptr, _c_int, _c_ptr]),
    "hps_server_statistics": (_c_int, [_c_ptr, ctypes.POINTER(Statistics)]),
    "hps_server_wait": (_c_int, [_c_ptr]),
    "hps_publish": (_c_int, [_c_str, _c_str, _c_str, _c_ptr, _c_i64, _c_ptr, _c_int, _c_int, ctypes.POINTER(_c_i64)]),
}

_lock = threading.Lock()
_lib = None


def _candidates():
    env = os.environ.get("HPS_C_LIBRARY")
    if env:
        yield os.path.join(env, LIBRARY_NAME) if os.path.isdir(env) else env
        return
    package = os.path.dirname(os.path.abspath(__file__))
    yield os.path.join(package, "lib", LIBRARY_NAME)


def library_path():
    """The path of the C library this process loads; FileNotFoundError naming where it looked if none."""
    searched = list(_candidates())
    for path in searched:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        "Could not find the HPS C library %s. Looked at: %s. Install the package with `pip install .` in the HPS "
        "repository (it builds and ships lib/%s), or set HPS_C_LIBRARY to a built libHPSCAPI.so / libhps.so."
        % (LIBRARY_NAME, ", ".join(searched), LIBRARY_NAME)
    )


def lib():
    """The loaded C library (loaded on first use, with every signature declared and the version checked)."""
    global _lib
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is None:
            path = library_path()
            try:
                handle = ctypes.CDLL(path)
            except OSError as e:
                raise OSError("could not load the HPS C library %s: %s" % (path, e)) from e
            missing = [name for name in _SIGNATURES if not hasattr(handle, name)]
            if missing:
                raise OSError("%s is not an HPS C library: it lacks %s" % (path, ", ".join(missing)))
            for name, (restype, argtypes) in _SIGNATURES.items():
                fn = getattr(handle, name)
                fn.restype = restype
                fn.argtypes = argtypes
            version = handle.hps_api_version()
            if version // 10000 != API_VERSION_MAJOR:
                raise OSError(
                    "%s implements HPS C API %d.%d, these bindings need major version %d"
                    % (path, version // 10000, version // 100 % 100, API_VERSION_MAJOR)
                )
            _lib = handle
    return _lib


def last_error():
    message = lib().hps_last_error()
    return message.decode("utf-8", "replace") if message else ""


def error(status, context=None):
    """The exception for a failed call with ``status`` (reads this thread's ``hps_last_error()``)."""
    cls = HPSValueError if status in ARGUMENT_ERRORS else HPSRuntimeError
    return cls(status, last_error(), context)


def check(status, context=None):
    """Raises the exception of ``status`` unless it is HPS_OK."""
    if status != HPS_OK:
        raise error(status, context)


def check_count(value, context=None):
    """For the calls that answer -1 (with hps_last_error) on failure."""
    if value < 0:
        raise HPSValueError(HPS_ERROR_INVALID_ARGUMENT, last_error(), context)
    return value


def version():
    """The C library's version string ("major.minor.patch")."""
    return lib().hps_version().decode()


class Server:
    """An ``hps_server``: databases, tables and caches of one configuration. Sessions are created on demand
    and kept for the life of the server (one per model and device)."""

    def __init__(self, config_path):
        self.config_path = config_path
        handle = _c_ptr()
        check(lib().hps_server_create(os.fsencode(config_path), ctypes.byref(handle)), "building the server from %s" % config_path)
        self.handle = handle.value
        self._sessions = {}
        self._lock = threading.Lock()

    def model_names(self):
        c = lib()
        count = check_count(c.hps_model_count(self.handle), "hps_model_count")
        return [c.hps_model_name(self.handle, i).decode() for i in range(count)]

    def session(self, model, device):
        """The session of ``model`` on ``device`` (an entry of its deployed_device_list)."""
        key = (model, device)
        session = self._sessions.get(key)
        if session is None:
            with self._lock:
                session = self._sessions.get(key)
                if session is None:
                    session = Session(self, model, device)
                    self._sessions[key] = session
        return session

    def statistics(self):
        stats = Statistics()
        check(lib().hps_server_statistics(self.handle, ctypes.byref(stats)), "hps_server_statistics")
        return stats.as_dict()

    def wait(self):
        check(lib().hps_server_wait(self.handle), "hps_server_wait")


class Session:
    """An ``hps_session``: lookups of one model on one device."""

    def __init__(self, server, model, device):
        self.server = server
        self.model = model
        self.device = device
        handle = _c_ptr()
        check(
            lib().hps_session_create(server.handle, model.encode(), int(device), ctypes.byref(handle)),
            "model %r on device %d" % (model, device),
        )
        self.handle = handle.value
        c = lib()
        self.table_count = check_count(c.hps_table_count(self.handle), "hps_table_count")
        self.int64_keys = bool(check_count(c.hps_session_int64_keys(self.handle), "hps_session_int64_keys"))
        self.on_gpu = bool(check_count(c.hps_session_on_gpu(self.handle), "hps_session_on_gpu"))
        self.dimensions = [check_count(c.hps_table_dimension(self.handle, t), "hps_table_dimension") for t in range(self.table_count)]
        self.max_keys = [check_count(c.hps_table_max_keys(self.handle, t), "hps_table_max_keys") for t in range(self.table_count)]
        self.table_names = [c.hps_table_name(self.handle, t).decode() for t in range(self.table_count)]
