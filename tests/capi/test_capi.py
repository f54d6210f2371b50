"""The C API (include/hps.h, libhps.so): answers bit-exact against the table files, every status code with its
message, handles that outlive or misuse each other, threads, and the example program compiled with cc."""

import ctypes
import os
import re
import shutil
import subprocess
import threading

import numpy as np
import pytest

from capi_support import INCLUDE, REPO, expected, hps, library_path, make_model, write_config, write_table  # noqa: F401 (fixtures)

OK, INVALID, CONFIG, TABLE_FILES, UNKNOWN_MODEL, UNKNOWN_TABLE, TOO_MANY, KEY_WIDTH, NO_DEVICE, CUDA, DATABASE, BUSY = range(12)
HOST, DEVICE = 0, 1


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("capi"))
    m1, a1 = make_model(d, "alpha", [(3000, 16), (500, 8)], seed=1)
    m2, a2 = make_model(d, "beta", [(2000, 32)], seed=2, gpucache=False)
    config = write_config(os.path.join(d, "ps.json"), [m1, m2])
    return d, config, {"alpha": (m1, a1), "beta": (m2, a2)}


def create_server(hps, config):
    server = ctypes.c_void_p()
    status = hps.hps_server_create(config.encode(), ctypes.byref(server))
    assert status == OK, hps.hps_last_error()
    return server


def create_session(hps, server, model, device=0):
    session = ctypes.c_void_p()
    status = hps.hps_session_create(server, model.encode(), device, ctypes.byref(session))
    assert status == OK, hps.hps_last_error()
    return session


def lookup(hps, session, table, keys, dim, memory=HOST, i32=False):
    keys = np.ascontiguousarray(keys, dtype=np.int32 if i32 else np.int64)
    out = np.full((len(keys), dim), np.nan, dtype=np.float32)
    f = hps.hps_lookup_i32 if i32 else hps.hps_lookup
    status = f(session, table, keys.ctypes.data, len(keys), out.ctypes.data, memory, None)
    return status, out


def error_text(hps):
    return hps.hps_last_error().decode()


@pytest.fixture(scope="module")
def server(hps, setup):
    server = create_server(hps, setup[1])
    yield server
    hps.hps_server_destroy(server)


def test_version(hps):
    version = hps.hps_version().decode()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    major, minor, patch = map(int, version.split("."))
    assert hps.hps_api_version() == major * 10000 + minor * 100 + patch
    header = open(os.path.join(INCLUDE, "hps.h")).read()
    assert "#define HPS_API_VERSION_MAJOR %d" % major in header


def test_models_and_tables(hps, server):
    assert hps.hps_model_count(server) == 2
    assert [hps.hps_model_name(server, i).decode() for i in range(2)] == ["alpha", "beta"]
    assert hps.hps_model_name(server, 2) is None and "out of range" in error_text(hps)
    session = create_session(hps, server, "alpha")
    assert hps.hps_table_count(session) == 2
    assert [hps.hps_table_dimension(session, t) for t in range(2)] == [16, 8]
    assert hps.hps_table_max_keys(session, 0) == 256 * 4
    assert hps.hps_table_name(session, 1).decode() == "table1"
    assert hps.hps_session_int64_keys(session) == 1
    assert hps.hps_session_on_gpu(session) in (0, 1)
    hps.hps_session_destroy(session)


@pytest.mark.parametrize("model", ["alpha", "beta"])
def test_lookup_bit_exact(hps, server, setup, model):
    entry, arrays = setup[2][model]
    session = create_session(hps, server, model)
    rng = np.random.RandomState(7)
    for t, (keys, vectors) in enumerate(arrays):
        dim = vectors.shape[1]
        for round in range(3):  # the cache fills between rounds: misses, then hits
            query = np.concatenate([rng.choice(keys, 300), rng.choice(keys[:10], 50), [1, 2, -5, 10**12]])  # dups, unknown keys
            rng.shuffle(query)
            status, out = lookup(hps, session, t, query, dim)
            assert status == OK, error_text(hps)
            want = expected(arrays, t, query, entry["default_value_for_each_table"][t])
            assert out.tobytes() == want.tobytes(), "model %s table %d round %d" % (model, t, round)
    hps.hps_session_destroy(session)


def test_empty_lookup_writes_nothing(hps, server):
    session = create_session(hps, server, "alpha")
    out = np.full(4, 7.0, dtype=np.float32)
    assert hps.hps_lookup(session, 0, None, 0, out.ctypes.data, HOST, None) == OK
    assert (out == 7.0).all()
    hps.hps_session_destroy(session)


def test_status_strings(hps):
    for code in list(range(13)) + [99]:
        assert hps.hps_status_string(code).decode() != "unknown status"
    assert hps.hps_status_string(12).decode() == "Kafka failure"
    assert hps.hps_status_string(12345).decode() == "unknown status"


def test_errors_name_the_problem(hps, server, setup):
    session = create_session(hps, server, "alpha")
    keys = np.arange(10, dtype=np.int64)
    out = np.zeros((10, 16), dtype=np.float32)

    def call(*args, f=hps.hps_lookup):
        return f(*args)

    # NULL and dead handles.
    assert call(None, 0, keys.ctypes.data, 10, out.ctypes.data, HOST, None) == INVALID
    assert "NULL" in error_text(hps)
    assert call(ctypes.c_void_p(12345), 0, keys.ctypes.data, 10, out.ctypes.data, HOST, None) == INVALID
    assert "not a live hps_session" in error_text(hps)
    # Table out of range.
    assert call(session, 2, keys.ctypes.data, 10, out.ctypes.data, HOST, None) == UNKNOWN_TABLE
    assert "table 2 out of range" in error_text(hps) and "alpha" in error_text(hps)
    assert call(session, -1, keys.ctypes.data, 10, out.ctypes.data, HOST, None) == UNKNOWN_TABLE
    assert hps.hps_table_dimension(session, 5) == -1 and "out of range" in error_text(hps)
    # Too many keys.
    big = np.zeros(1025, dtype=np.int64)
    big_out = np.zeros((1025, 16), dtype=np.float32)
    assert call(session, 0, big.ctypes.data, 1025, big_out.ctypes.data, HOST, None) == TOO_MANY
    assert "1025 keys exceed" in error_text(hps) and "256 × 4" in error_text(hps)
    # Negative count, NULL pointers, bad memory kind.
    assert call(session, 0, keys.ctypes.data, -1, out.ctypes.data, HOST, None) == INVALID
    assert "negative" in error_text(hps)
    assert call(session, 0, None, 10, out.ctypes.data, HOST, None) == INVALID and "keys is NULL" in error_text(hps)
    assert call(session, 0, keys.ctypes.data, 10, None, HOST, None) == INVALID and "out is NULL" in error_text(hps)
    assert call(session, 0, keys.ctypes.data, 10, out.ctypes.data, 7, None) == INVALID and "HPS_MEMORY_HOST" in error_text(hps)
    # Key width.
    keys32 = np.arange(10, dtype=np.int32)
    assert call(session, 0, keys32.ctypes.data, 10, out.ctypes.data, HOST, None, f=hps.hps_lookup_i32) == KEY_WIDTH
    assert "supportlonglong true" in error_text(hps)
    # Unknown model, device not deployed.
    s = ctypes.c_void_p()
    assert hps.hps_session_create(server, b"gamma", 0, ctypes.byref(s)) == UNKNOWN_MODEL
    assert "gamma" in error_text(hps) and "alpha" in error_text(hps)
    assert hps.hps_session_create(server, b"alpha", 3, ctypes.byref(s)) == NO_DEVICE
    assert "not deployed on device 3" in error_text(hps)
    assert hps.hps_session_create(server, None, 0, ctypes.byref(s)) == INVALID
    # Device memory on a session no GPU serves.
    if hps.hps_session_on_gpu(session) == 0 and not os.path.exists("/dev/nvidia0"):
        assert call(session, 0, keys.ctypes.data, 10, out.ctypes.data, DEVICE, None) == NO_DEVICE
        assert "no CUDA device" in error_text(hps)
    # Errors are per thread: another thread sees its own (none).
    seen = []
    t = threading.Thread(target=lambda: seen.append(hps.hps_last_error()))
    t.start()
    t.join()
    assert seen == [b""]
    # Nothing above broke the session.
    status, out2 = lookup(hps, session, 0, keys, 16)
    assert status == OK
    hps.hps_session_destroy(session)
    hps.hps_session_destroy(session)  # a second destroy is harmless
    assert call(session, 0, keys.ctypes.data, 10, out.ctypes.data, HOST, None) == INVALID


def test_server_create_errors(hps, setup, tmp_path):
    d, config, models = setup
    server = ctypes.c_void_p()
    assert hps.hps_server_create(None, ctypes.byref(server)) == INVALID
    assert hps.hps_server_create(config.encode(), None) == INVALID
    assert hps.hps_server_create(str(tmp_path / "missing.json").encode(), ctypes.byref(server)) == CONFIG
    assert "missing.json" in error_text(hps)
    bad = tmp_path / "bad.json"
    bad.write_text('{"models": [ {"model": "x", }')
    assert hps.hps_server_create(str(bad).encode(), ctypes.byref(server)) == CONFIG
    assert "bad.json" in error_text(hps)
    assert server.value is None
    # A table directory whose files disagree with the configured dimension.
    entry, _ = make_model(str(tmp_path), "m", [(100, 8)])
    entry["embedding_vecsize_per_table"] = [7]
    path = write_config(str(tmp_path / "dim.json"), [entry])
    status = hps.hps_server_create(path.encode(), ctypes.byref(server))
    assert status in (CONFIG, TABLE_FILES), error_text(hps)
    assert "m_t0" in error_text(hps)
    # A persistent database that cannot be opened.
    blocker = tmp_path / "rocks_is_a_file"
    blocker.write_text("x")
    entry, _ = make_model(str(tmp_path), "p", [(100, 8)])
    path = write_config(str(tmp_path / "rocks.json"), [entry], persistent_db={"type": "rocks_db", "path": str(blocker)})
    assert hps.hps_server_create(path.encode(), ctypes.byref(server)) == DATABASE
    assert "rocks_is_a_file" in error_text(hps)


def test_destroy_server_with_live_sessions(hps, setup):
    d, config, models = setup
    server = create_server(hps, config)
    session = create_session(hps, server, "alpha")
    assert hps.hps_server_destroy(server) == BUSY
    assert "1 live session" in error_text(hps)
    # The session keeps its server alive and working.
    keys = np.arange(20, dtype=np.int64) * 3
    status, out = lookup(hps, session, 0, keys, 16)
    assert status == OK
    assert out.tobytes() == expected(models["alpha"][1], 0, keys, 0.5).tobytes()
    # The server handle itself is gone.
    assert hps.hps_model_count(server) == -1 and "not a live hps_server" in error_text(hps)
    hps.hps_session_destroy(session)
    assert hps.hps_server_destroy(None) == INVALID


def test_int32_keys(hps, tmp_path):
    entry, arrays = make_model(str(tmp_path), "small", [(1000, 4)])
    config = write_config(str(tmp_path / "ps32.json"), [entry], supportlonglong=False)
    server = create_server(hps, config)
    session = create_session(hps, server, "small")
    assert hps.hps_session_int64_keys(session) == 0
    query = np.array([0, 3, 3, 2997, 1, 4000000000 - 2**32, -1], dtype=np.int64)  # -1 reads as uint32 4294967295
    status, out = lookup(hps, session, 0, query, 4, i32=True)
    assert status == OK, error_text(hps)
    want = expected(arrays, 0, [int(np.uint32(np.int32(k))) for k in query.astype(np.int32)], 0.5)
    assert out.tobytes() == want.tobytes()
    status, _ = lookup(hps, session, 0, query, 4)
    assert status == KEY_WIDTH and "hps_lookup_i32" in error_text(hps)
    hps.hps_session_destroy(session)
    assert hps.hps_server_destroy(server) == OK


def test_threads_share_a_session(hps, server, setup):
    entry, arrays = setup[2]["alpha"]
    session = create_session(hps, server, "alpha")
    keys, vectors = arrays[0]
    failures = []

    def work(seed):
        rng = np.random.RandomState(seed)
        for _ in range(20):
            query = rng.choice(np.concatenate([keys, [1, 2]]), rng.randint(1, 1024))
            status, out = lookup(hps, session, 0, query, 16)
            if status != OK or out.tobytes() != expected(arrays, 0, query, 0.5).tobytes():
                failures.append((seed, status, error_text(hps)))

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    hps.hps_session_destroy(session)


def test_statistics(hps, setup):
    server = create_server(hps, setup[1])
    session = create_session(hps, server, "beta")  # no cache: every distinct key goes to the databases
    keys = np.array([0, 3, 3, 1], dtype=np.int64)
    assert lookup(hps, session, 0, keys, 32)[0] == OK
    stats = (ctypes.c_int64 * 8)()
    assert hps.hps_server_statistics(server, stats) == OK
    lookups, n, unique, hits, misses, vdb, pdb, defaults = list(stats)
    assert (lookups, n) == (1, 4)
    assert vdb == 2 and defaults == 1
    assert hps.hps_server_wait(server) == OK
    hps.hps_session_destroy(session)
    assert hps.hps_server_destroy(server) == OK


def test_exported_symbols_match_the_header(library_path):
    header = open(os.path.join(INCLUDE, "hps.h")).read()
    declared = set(re.findall(r"\b(hps_[a-z0-9_]+)\s*\(", header))
    out = subprocess.run(["nm", "-D", "--defined-only", library_path], check=True, capture_output=True, text=True).stdout
    exported = {line.split()[-1] for line in out.splitlines() if " T hps_" in line}
    assert declared <= exported, declared - exported


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_example_program(library_path, setup, tmp_path):
    d, config, models = setup
    lib_dir = os.path.dirname(library_path)
    link_dir = tmp_path / "lib"
    link_dir.mkdir()
    shutil.copy(library_path, link_dir / "libhps.so")
    binary = str(tmp_path / "lookup")
    subprocess.run(
        ["cc", "-std=c99", "-Wall", "-Werror", "-I", INCLUDE, os.path.join(REPO, "examples", "c", "lookup.c"),
         "-L", str(link_dir), "-lhps", "-Wl,-rpath," + str(link_dir), "-o", binary],
        check=True)
    keys = [0, 3, 3, 2997, 1, 8997]
    run = subprocess.run([binary, config, "alpha", "0"] + [str(k) for k in keys], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = [l for l in run.stdout.splitlines() if re.match(r"^-?\d+:", l)]
    got = np.array([[np.float32(float(v)) for v in l.split(":")[1].split()] for l in lines], dtype=np.float32)
    want = expected(models["alpha"][1], 0, keys, 0.5)
    assert got.tobytes() == want.tobytes()
    # An error exits with the status and prints the message.
    run = subprocess.run([binary, config, "nosuch", "0", "1"], capture_output=True, text=True)
    assert run.returncode == UNKNOWN_MODEL and "nosuch" in run.stderr
