"""Benchmark of `hps serve`: requests/s, keys/s and p50/p99 latency with 1, 16 and 64 concurrent clients over
HTTP (tritonclient.http, binary tensors) and gRPC (tritonclient.grpc, raw tensor contents), beside the same
lookups in-process through the C API (libhps.so via ctypes), in the same run on the same tables, with the
ratios to the in-process numbers. One request: 1024 keys over 26 tables (about 39 per table; Zipf-ish mix of
hot keys and misses that get the default).

    .venv/bin/python bench/serve.py [--seconds 5] [--rows 20000] [--dim 16] [--clients 1,16,64]

Needs .build/release/hps (swift build -c release --product hps) and libhps.so (scripts/build-capi.sh, or
HPS_C_LIBRARY)."""

import argparse
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLES = 26
BATCH = 1024


def make_deployment(directory, rows, dim):
    rng = np.random.RandomState(0)
    paths = []
    for t in range(TABLES):
        path = os.path.join(directory, "t%d" % t)
        os.makedirs(path)
        np.arange(rows, dtype="<i8").tofile(os.path.join(path, "key"))
        rng.uniform(-1, 1, size=(rows, dim)).astype("<f4").tofile(os.path.join(path, "emb_vector"))
        paths.append(path)
    per_table = -(-BATCH // TABLES)
    model = {
        "model": "bench", "sparse_files": paths, "embedding_vecsize_per_table": [dim] * TABLES,
        "maxnum_catfeature_query_per_table_per_sample": [per_table] * TABLES, "max_batch_size": 1,
        "deployed_device_list": [0], "default_value_for_each_table": [0.0] * TABLES, "hit_rate_threshold": 1.0,
        "num_of_worker_buffer_in_pool": 32,
    }
    config = os.path.join(directory, "ps.json")
    with open(config, "w") as f:
        json.dump({"supportlonglong": True, "models": [model]}, f)
    return config


def make_requests(rows, count, seed=1):
    """`count` requests: NUMKEYS splitting 1024 keys over 26 tables, keys mostly hot, some unknown."""
    rng = np.random.RandomState(seed)
    counts = np.full(TABLES, BATCH // TABLES, dtype=np.int32)
    counts[: BATCH - counts.sum()] += 1
    requests = []
    for _ in range(count):
        keys = np.minimum(rng.zipf(1.2, size=BATCH) - 1, rows + rows // 10).astype(np.int64)
        requests.append((keys, counts))
    return requests


def percentile(values, p):
    return float(np.percentile(np.array(values), p)) * 1e3 if values else float("nan")


def drive(clients, seconds, call):
    """Runs `call(client_index, i)` from `clients` threads for `seconds`; returns (requests, latencies)."""
    latencies = [[] for _ in range(clients)]
    stop = time.time() + seconds
    errors = []

    def worker(c):
        i = 0
        try:
            while time.time() < stop:
                t0 = time.perf_counter()
                call(c, i)
                latencies[c].append(time.perf_counter() - t0)
                i += 1
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(errors[0])
    flat = [x for per in latencies for x in per]
    return len(flat), elapsed, flat


RESULTS = {}


def report(label, clients, n, elapsed, latencies, baseline=None):
    rps = n / elapsed
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    RESULTS[(label, clients)] = rps
    ratio = "%.2fx" % (rps / RESULTS[(baseline, clients)]) if baseline and RESULTS.get((baseline, clients)) else "1.00x (baseline)"
    print("| %s | %d | %.0f | %.0f | %.2f | %.2f | %.2f | %s |" % (label, clients, rps, rps * BATCH, p50, p99, p99 / p50, ratio))
    sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--clients", default="1,16,64")
    args = parser.parse_args()
    clients_list = [int(c) for c in args.clients.split(",")]
    directory = tempfile.mkdtemp(prefix="hps-bench-serve-")
    config = make_deployment(directory, args.rows, args.dim)
    requests = make_requests(args.rows, 256)

    os.environ.setdefault("HPS_LOG_LEVEL", "warning")
    capi_label = "in-process C API (ctypes, 26 hps_lookup calls)"
    print("%d tables × dim %d, %d rows each; %d keys per request; %.0f s per row\n" % (TABLES, args.dim, args.rows, BATCH, args.seconds))
    print("| path | clients | requests/s | keys/s | p50 ms | p99 ms | p99/p50 | keys/s vs in-process |")
    print("|---|---|---|---|---|---|---|---|")
    run_capi(config, requests, clients_list, args, capi_label)

    ports = []
    for _ in range(3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    port, grpc_port, metrics_port = ports
    env = dict(os.environ)
    server = subprocess.Popen(
        [os.path.join(REPO, ".build/release/hps"), "serve", "--config", config, "--http-port", str(port),
         "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port)], env=env)
    url, grpc_url = "127.0.0.1:%d" % port, "127.0.0.1:%d" % grpc_port
    for _ in range(600):
        try:
            if urllib.request.urlopen("http://%s/v2/health/ready" % url, timeout=1).status == 200:
                break
        except OSError:
            time.sleep(0.1)
    try:
        for clients in clients_list:
            local = threading.local()  # a tritonclient client belongs to the thread that made it

            def call_http(c, i):
                if not hasattr(local, "http"):
                    local.http = httpclient.InferenceServerClient(url)
                keys, counts = requests[(c * 7 + i) % len(requests)]
                inputs = [httpclient.InferInput("KEYS", [1, BATCH], "INT64"), httpclient.InferInput("NUMKEYS", [1, TABLES], "INT32")]
                inputs[0].set_data_from_numpy(keys.reshape(1, -1))
                inputs[1].set_data_from_numpy(counts.reshape(1, -1))
                out = local.http.infer("bench", inputs).as_numpy("OUTPUT0")
                assert out.size == BATCH * args.dim

            def call_grpc(c, i):
                if not hasattr(local, "grpc"):
                    local.grpc = grpcclient.InferenceServerClient(grpc_url)
                keys, counts = requests[(c * 7 + i) % len(requests)]
                inputs = [grpcclient.InferInput("KEYS", [1, BATCH], "INT64"), grpcclient.InferInput("NUMKEYS", [1, TABLES], "INT32")]
                inputs[0].set_data_from_numpy(keys.reshape(1, -1))
                inputs[1].set_data_from_numpy(counts.reshape(1, -1))
                out = local.grpc.infer("bench", inputs).as_numpy("OUTPUT0")
                assert out.size == BATCH * args.dim

            for label, call in (("hps serve, tritonclient.grpc (raw contents)", call_grpc),
                                ("hps serve, tritonclient.http (binary)", call_http)):
                call(0, 0)
                report(label, clients, *drive(clients, args.seconds, call), baseline=capi_label)
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
        assert code == 0, code


def run_capi(config, requests, clients_list, args, label):
    library = os.environ.get("HPS_C_LIBRARY") or os.path.join(REPO, ".build-python/release/libhps.so")
    lib = ctypes.CDLL(library)
    P = ctypes.c_void_p
    lib.hps_server_create.argtypes, lib.hps_server_create.restype = [ctypes.c_char_p, ctypes.POINTER(P)], ctypes.c_int
    lib.hps_session_create.argtypes, lib.hps_session_create.restype = [P, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(P)], ctypes.c_int
    lib.hps_lookup.argtypes, lib.hps_lookup.restype = [P, ctypes.c_int, P, ctypes.c_int64, P, ctypes.c_int, P], ctypes.c_int
    lib.hps_last_error.restype = ctypes.c_char_p
    handle = P()
    assert lib.hps_server_create(config.encode(), ctypes.byref(handle)) == 0, lib.hps_last_error()
    session = P()
    assert lib.hps_session_create(handle, b"bench", 0, ctypes.byref(session)) == 0, lib.hps_last_error()
    for clients in clients_list:
        outs = [np.empty(BATCH * args.dim, dtype=np.float32) for _ in range(clients)]

        def capi(c, i):
            keys, counts = requests[(c * 7 + i) % len(requests)]
            out = outs[c]
            k, o = keys.ctypes.data, out.ctypes.data
            start = 0
            for t in range(TABLES):
                n = int(counts[t])
                rc = lib.hps_lookup(session, t, k + start * 8, n, o + start * args.dim * 4, 0, None)
                if rc != 0:
                    raise RuntimeError(lib.hps_last_error())
                start += n

        capi(0, 0)
        report(label, clients, *drive(clients, args.seconds, capi))
    lib.hps_session_destroy.argtypes = [P]
    lib.hps_server_destroy.argtypes = [P]
    lib.hps_session_destroy(session)
    lib.hps_server_destroy(handle)


if __name__ == "__main__":
    main()
