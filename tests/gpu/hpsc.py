"""libhps.so through ctypes for the GPU checks and benchmarks (the prototypes of include/hps.h), plus table and
config writers. Used on the GPU machine, where PyTorch provides device memory and streams."""

import ctypes
import json
import os

import numpy as np

P, I, I64, S = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_char_p
HOST, DEVICE = 0, 1


def load(path=None):
    path = path or os.environ.get("HPS_C_LIBRARY") or os.path.join(os.path.dirname(__file__), "..", "..", "gpu-bin", "libhps.so")
    lib = ctypes.CDLL(path)
    for name, res, args in [
        ("hps_version", S, []), ("hps_last_error", S, []),
        ("hps_server_create", I, [S, ctypes.POINTER(P)]), ("hps_server_destroy", I, [P]),
        ("hps_session_create", I, [P, S, I, ctypes.POINTER(P)]), ("hps_session_destroy", None, [P]),
        ("hps_table_dimension", I, [P, I]), ("hps_session_on_gpu", I, [P]),
        ("hps_lookup", I, [P, I, P, I64, P, I, P]), ("hps_lookup_i32", I, [P, I, P, I64, P, I, P]),
        ("hps_server_statistics", I, [P, P]), ("hps_server_wait", I, [P]),
    ]:
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    return lib


class Server:
    def __init__(self, lib, config):
        self.lib = lib
        self.handle = P()
        status = lib.hps_server_create(config.encode(), ctypes.byref(self.handle))
        if status:
            raise RuntimeError("hps_server_create: %d %s" % (status, lib.hps_last_error().decode()))

    def session(self, model, device=0):
        s = P()
        status = self.lib.hps_session_create(self.handle, model.encode(), device, ctypes.byref(s))
        if status:
            raise RuntimeError("hps_session_create: %d %s" % (status, self.lib.hps_last_error().decode()))
        return s

    def statistics(self):
        stats = (ctypes.c_int64 * 8)()
        self.lib.hps_server_statistics(self.handle, stats)
        return dict(zip(["lookups", "keys", "unique", "hits", "misses", "vdb", "pdb", "defaults"], list(stats)))

    def wait(self):
        self.lib.hps_server_wait(self.handle)


def lookup(lib, session, table, keys, out, memory, stream=None, i32=False):
    """keys/out: torch tensors (device memory) or numpy arrays (host memory)."""
    if hasattr(keys, "data_ptr"):
        kp, op = keys.data_ptr(), out.data_ptr()
    else:
        kp, op = keys.ctypes.data, out.ctypes.data
    f = lib.hps_lookup_i32 if i32 else lib.hps_lookup
    status = f(session, table, kp, len(keys), op, memory, stream)
    if status:
        raise RuntimeError("hps_lookup: %d %s" % (status, lib.hps_last_error().decode()))


def write_table(path, keys, vectors):
    os.makedirs(path, exist_ok=True)
    np.asarray(keys, dtype="<i8").tofile(os.path.join(path, "key"))
    np.asarray(vectors, dtype="<f4").tofile(os.path.join(path, "emb_vector"))


def model_entry(name, paths, dims, devices=(0,), **overrides):
    entry = {
        "model": name, "sparse_files": list(paths), "embedding_table_names": ["t%d" % i for i in range(len(paths))],
        "embedding_vecsize_per_table": list(dims), "maxnum_catfeature_query_per_table_per_sample": [64] * len(paths),
        "default_value_for_each_table": [0.5] * len(paths), "deployed_device_list": list(devices), "max_batch_size": 1024,
        "hit_rate_threshold": 1.0, "gpucacheper": 0.1, "gpucache": True, "num_of_worker_buffer_in_pool": 4,
    }
    entry.update(overrides)
    return entry


def write_config(path, models, **top):
    config = {"supportlonglong": True, "models": models}
    config.update(top)
    with open(path, "w") as f:
        json.dump(config, f, indent=1)
    return path
