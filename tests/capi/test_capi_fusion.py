"""hps_lookup_tables with fuse_embedding_table: a fused server answers every table exactly as an unfused one (and
as the table files say), for int64 and int32 keys, with keys shared across the fused tables."""

import ctypes
import os

import numpy as np
import pytest

from capi_support import expected, hps, library_path, make_model, write_config  # noqa: F401 (fixtures)

OK, INVALID, TOO_MANY, KEY_WIDTH = 0, 1, 6, 7
HOST = 0
DIMS = [16, 8, 16, 16]


def create(hps, config, model):
    server = ctypes.c_void_p()
    assert hps.hps_server_create(config.encode(), ctypes.byref(server)) == OK, hps.hps_last_error()
    session = ctypes.c_void_p()
    assert hps.hps_session_create(server, model.encode(), 0, ctypes.byref(session)) == OK, hps.hps_last_error()
    return server, session


def lookup_tables(hps, session, tables, batches, i32=False):
    keys = np.ascontiguousarray(np.concatenate(batches), dtype=np.int32 if i32 else np.int64)
    counts = np.array([len(b) for b in batches], dtype=np.int64)
    ids = np.array(tables, dtype=np.int32)
    out = np.full(sum(len(b) * DIMS[t] for t, b in zip(tables, batches)), np.nan, dtype=np.float32)
    f = hps.hps_lookup_tables_i32 if i32 else hps.hps_lookup_tables
    status = f(session, len(tables), ids.ctypes.data, counts.ctypes.data, keys.ctypes.data, out.ctypes.data, HOST, None)
    parts, start = [], 0
    for t, b in zip(tables, batches):
        parts.append(out[start:start + len(b) * DIMS[t]].reshape(len(b), DIMS[t]))
        start += len(b) * DIMS[t]
    return status, parts


@pytest.mark.parametrize("i32", [False, True])
@pytest.mark.parametrize("cache", ["dynamic", "static", "direct"])
def test_fused_equals_unfused(hps, tmp_path, i32, cache):
    d = str(tmp_path)
    # make_model gives every table the keys 0, 3, 6, …: the fused tables share their keys.
    entry, arrays = make_model(d, "m", [(1500, 16), (400, 8), (900, 16), (300, 16)], seed=5)
    entry["default_value_for_each_table"] = [0.25, -1.0, 0.25, 0.25]
    entry["maxnum_catfeature_query_per_table_per_sample"] = [2, 1, 3, 1]
    entry["cpu_cache"] = cache != "direct"
    if cache == "static":
        entry["embedding_cache_type"] = "static"
    fused_config = write_config(os.path.join(d, "fused.json"), [entry], supportlonglong=not i32, fuse_embedding_table=True)
    plain_config = write_config(os.path.join(d, "plain.json"), [entry], supportlonglong=not i32)
    fused_server, fused = create(hps, fused_config, "m")
    plain_server, plain = create(hps, plain_config, "m")
    rng = np.random.RandomState(11)
    try:
        for order in ([0, 1, 2, 3], [3, 2, 0, 1, 0]):
            batches = []
            for t in order:
                n = rng.randint(1, 256 * entry["maxnum_catfeature_query_per_table_per_sample"][t] + 1)
                known = arrays[t][0][rng.randint(0, min(60, len(arrays[t][0])), size=n)]
                unknown = rng.randint(0, 2**31 - 1, size=n) if i32 else rng.randint(-2**62, 2**62, size=n, dtype=np.int64)
                batches.append(np.where(rng.rand(n) < 0.8, known, unknown))
            status, fused_out = lookup_tables(hps, fused, order, batches, i32)
            assert status == OK, hps.hps_last_error()
            status, plain_out = lookup_tables(hps, plain, order, batches, i32)
            assert status == OK, hps.hps_last_error()
            for j, t in enumerate(order):
                want = expected(arrays, t, batches[j], entry["default_value_for_each_table"][t])
                assert np.array_equal(plain_out[j].view(np.uint32), want.view(np.uint32)), (order, t)
                assert np.array_equal(fused_out[j].view(np.uint32), want.view(np.uint32)), (order, t)
        # Errors name the table: too many keys, mismatched key width.
        status, _ = lookup_tables(hps, fused, [0], [np.zeros(513, np.int64)], i32)
        assert status == TOO_MANY and "table 0 'table0'" in hps.hps_last_error().decode()
        status, _ = lookup_tables(hps, fused, [1], [np.zeros(3, np.int64)], not i32)
        assert status == KEY_WIDTH
        ids = np.array([0], np.int32)
        f = hps.hps_lookup_tables_i32 if i32 else hps.hps_lookup_tables
        assert f(fused, 1, ids.ctypes.data, None, None, None, HOST, None) == INVALID
        assert "counts is NULL" in hps.hps_last_error().decode()
    finally:
        for session, server in ((fused, fused_server), (plain, plain_server)):
            hps.hps_session_destroy(session)
            hps.hps_server_destroy(server)
