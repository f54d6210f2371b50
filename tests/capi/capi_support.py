"""Helpers and fixtures of the C API tests (imported by test_capi.py; not a conftest, so that the other test
 folders keep their own `conftest` module): libhps.so (built by scripts/build-capi.sh, or HPS_C_LIBRARY), table
directories written with NumPy (`key` int64 + `emb_vector` float32), and HPS JSON configs."""

import ctypes
import json
import os
import subprocess

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INCLUDE = os.path.join(REPO, "include")

os.environ.setdefault("HPS_LOG_LEVEL", "error")


@pytest.fixture(scope="session")
def library_path():
    path = os.environ.get("HPS_C_LIBRARY")
    if not path:
        out = subprocess.run([os.path.join(REPO, "scripts", "build-capi.sh")], check=True, capture_output=True, text=True)
        path = out.stdout.strip().splitlines()[-1]
    assert os.path.isfile(path), path
    return path


@pytest.fixture(scope="session")
def hps(library_path):
    """libhps.so through ctypes, with the prototypes of include/hps.h."""
    lib = ctypes.CDLL(library_path)
    P, I, I64, S = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_char_p
    for name, res, args in [
        ("hps_version", S, []), ("hps_api_version", I, []), ("hps_last_error", S, []), ("hps_status_string", S, [I]),
        ("hps_server_create", I, [S, ctypes.POINTER(P)]), ("hps_server_destroy", I, [P]),
        ("hps_model_count", I, [P]), ("hps_model_name", S, [P, I]),
        ("hps_session_create", I, [P, S, I, ctypes.POINTER(P)]), ("hps_session_destroy", None, [P]),
        ("hps_table_count", I, [P]), ("hps_table_dimension", I, [P, I]), ("hps_table_max_keys", I64, [P, I]),
        ("hps_table_name", S, [P, I]), ("hps_session_on_gpu", I, [P]), ("hps_session_int64_keys", I, [P]),
        ("hps_lookup", I, [P, I, P, I64, P, I, P]), ("hps_lookup_i32", I, [P, I, P, I64, P, I, P]),
        ("hps_lookup_tables", I, [P, I, P, P, P, P, I, P]), ("hps_lookup_tables_i32", I, [P, I, P, P, P, P, I, P]),
        ("hps_server_statistics", I, [P, P]), ("hps_server_wait", I, [P]),
    ]:
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    return lib


def write_table(path, keys, vectors):
    os.makedirs(path, exist_ok=True)
    np.asarray(keys, dtype="<i8").tofile(os.path.join(path, "key"))
    np.asarray(vectors, dtype="<f4").tofile(os.path.join(path, "emb_vector"))


def make_model(directory, name, tables, seed=0, **overrides):
    """Writes `tables` ([(rows, dim), ...], keys 0..rows-1 scaled by 3) and returns (model entry, arrays)."""
    rng = np.random.RandomState(seed)
    paths, arrays = [], []
    for t, (rows, dim) in enumerate(tables):
        keys = np.arange(rows, dtype=np.int64) * 3
        vectors = rng.uniform(-1, 1, size=(rows, dim)).astype(np.float32)
        path = os.path.join(directory, "%s_t%d" % (name, t))
        write_table(path, keys, vectors)
        paths.append(path)
        arrays.append((keys, vectors))
    entry = {
        "model": name,
        "sparse_files": paths,
        "embedding_table_names": ["table%d" % t for t in range(len(tables))],
        "embedding_vecsize_per_table": [dim for _, dim in tables],
        "maxnum_catfeature_query_per_table_per_sample": [4] * len(tables),
        "default_value_for_each_table": [0.5 + t for t in range(len(tables))],
        "deployed_device_list": [0],
        "max_batch_size": 256,
        "hit_rate_threshold": 1.0,
        "gpucacheper": 0.25,
        "gpucache": True,
        "num_of_worker_buffer_in_pool": 4,
    }
    entry.update(overrides)
    return entry, arrays


def write_config(path, models, supportlonglong=True, **top):
    config = {"supportlonglong": supportlonglong, "models": models}
    config.update(top)
    with open(path, "w") as f:
        json.dump(config, f, indent=2)
    return path


def expected(arrays, table, keys, default):
    """The vectors HPS must answer for `keys` of `table`, from the table files (unknown keys → default)."""
    table_keys, vectors = arrays[table]
    index = {int(k): i for i, k in enumerate(table_keys)}
    dim = vectors.shape[1]
    out = np.full((len(keys), dim), default, dtype=np.float32)
    for i, k in enumerate(keys):
        if int(k) in index:
            out[i] = vectors[index[int(k)]]
    return out
