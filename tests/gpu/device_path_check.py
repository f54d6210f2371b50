"""GPU check of the device-resident lookup path through the C API: device-memory lookups (keys and vectors in
CUDA memory, on a torch stream) must equal host-memory lookups and the table files bit for bit — with misses
served by the hash map and by RocksDB, evictions, static tables, int32 keys, the background insert
(hit_rate_threshold 0.9), 8 threads on one session, and every GPU present (one thread per device at once).

    HPS_C_LIBRARY=gpu-bin/libhps.so python tests/gpu/device_path_check.py [--workdir DIR]

Prints one line per check and "N passed, M failed"; exits 1 on any failure."""

import argparse
import os
import sys
import tempfile
import threading
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import hpsc  # noqa: E402

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print("%s %s%s" % ("PASS" if ok else "FAIL", name, (": " + detail) if detail else ""), flush=True)


def make_table(directory, name, rows, dim, seed):
    rng = np.random.RandomState(seed)
    keys = rng.permutation(rows * 4)[:rows].astype(np.int64) * 7 - 1000  # scattered, some negative
    vectors = rng.standard_normal((rows, dim)).astype(np.float32)
    path = os.path.join(directory, name)
    hpsc.write_table(path, keys, vectors)
    return path, keys, vectors


def expected(keys, vectors, query, default):
    index = {int(k): i for i, k in enumerate(keys)}
    out = np.full((len(query), vectors.shape[1]), default, dtype=np.float32)
    rows = [index.get(int(k), -1) for k in query]
    for i, r in enumerate(rows):
        if r >= 0:
            out[i] = vectors[r]
    return out


def zipf_queries(keys, n, batches, seed, unknown=0.02):
    rng = np.random.RandomState(seed)
    ranks = np.minimum(rng.zipf(1.05, size=(batches, n)) - 1, len(keys) - 1)
    q = keys[rng.permutation(len(keys))][ranks]
    mask = rng.rand(batches, n) < unknown
    q[mask] = 10**12 + rng.randint(0, 1000, size=mask.sum())
    return q


def run_batches(lib, session, table, queries, dim, device, stream=None, i32=False):
    outs = []
    for q in queries:
        keys = torch.from_numpy(q.astype(np.int32) if i32 else q).to(device)
        out = torch.full((len(q), dim), float("nan"), device=device)
        s = torch.cuda.Stream(device=device) if stream == "own" else None
        if s is not None:
            with torch.cuda.stream(s):
                hpsc.lookup(lib, session, table, keys, out, hpsc.DEVICE, ctypes_stream(s), i32=i32)
            s.synchronize()
        else:
            hpsc.lookup(lib, session, table, keys, out, hpsc.DEVICE, None, i32=i32)
        outs.append(out.cpu().numpy())
    return outs


def ctypes_stream(s):
    import ctypes
    return ctypes.c_void_p(s.cuda_stream)


def scenario(lib, workdir, name, table_rows, dim, model_overrides, top, batches=12, n=4096, i32=False):
    path, keys, vectors = make_table(workdir, name, table_rows, dim, seed=len(name))
    if i32:
        keys = np.arange(table_rows, dtype=np.int64) * 5 + 3
        hpsc.write_table(path, keys, vectors)
    entry = hpsc.model_entry(name, [path], [dim], **model_overrides)
    config = hpsc.write_config(os.path.join(workdir, name + ".json"), [entry], supportlonglong=not i32, **top)
    server = hpsc.Server(lib, config)
    session = server.session(name)
    on_gpu = lib.hps_session_on_gpu(session)
    queries = zipf_queries(keys, n, batches, seed=3)
    if i32:
        queries = np.where(queries > 2**31 - 1, 2**31 - 5, queries)
    default = entry["default_value_for_each_table"][0]
    threshold = entry.get("hit_rate_threshold", 1.0)
    device_out = run_batches(lib, session, 0, queries, dim, "cuda:0", stream="own", i32=i32)
    server.wait()
    host_out = []
    for q in queries:
        out = np.empty((len(q), dim), dtype=np.float32)
        hpsc.lookup(lib, session, 0, q.astype(np.int32) if i32 else q, out, hpsc.HOST, i32=i32)
        host_out.append(out)
    want = [expected(keys, vectors, q, default) for q in queries]
    if threshold >= 1.0:
        ok = all(d.tobytes() == w.tobytes() for d, w in zip(device_out, want))
        check("%s: device lookups equal the table files (on_gpu=%d)" % (name, on_gpu), ok)
        ok = all(h.tobytes() == w.tobytes() for h, w in zip(host_out, want))
        check("%s: host lookups equal the table files" % name, ok)
    else:
        # Rows are exact or the default (answered now, inserted in the background); later rounds converge.
        exact_or_default = all(
            ((d == w).all(axis=1) | (d == default).all(axis=1)).all() for d, w in zip(device_out, want))
        check("%s: every device row exact or the default" % name, exact_or_default)
        server.wait()
        again = run_batches(lib, session, 0, queries, dim, "cuda:0", i32=i32)
        server.wait()
        again = run_batches(lib, session, 0, queries, dim, "cuda:0", i32=i32)
        if entry.get("cache_admission") == "none":
            ok = sum(a.tobytes() == w.tobytes() for a, w in zip(again, want))
            check("%s: after background inserts, device batches exact" % name, ok >= len(want) - 1, "%d/%d" % (ok, len(want)))
        else:
            exact_or_default = all(
                ((a == w).all(axis=1) | (a == default).all(axis=1)).all() for a, w in zip(again, want))
            check("%s: after background inserts, every device row exact or the default" % name, exact_or_default)
    stats = server.statistics()
    print("   stats:", stats, flush=True)
    return server, session, keys, vectors, queries, want


def hps_binary():
    """The `hps` CLI beside the C library (gpu-bin/hps as scripts/gpu-run.sh unpacks it), or $HPS_BIN."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.environ.get("HPS_BIN") or os.path.join(here, "..", "..", "gpu-bin", "hps")


def updates_scenario(lib, workdir):
    """Online updates (Kafka, through `hps kafka-mock` and `hps publish`) reach device-memory lookups: rows the GPU
    cache held before the update, rows it fetches while updates arrive and keys that are new all come back
    updated once the host path sees them."""
    import subprocess
    binary = hps_binary()
    if not os.access(binary, os.X_OK):
        check("online updates reach device lookups", False, "no hps binary at %s (set HPS_BIN)" % binary)
        return
    mock = subprocess.Popen([binary, "kafka-mock", "--brokers", "1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = mock.stdout.readline().strip()
        if not line.startswith("bootstrap.servers="):
            check("online updates reach device lookups", False, "hps kafka-mock printed %r" % line)
            return
        brokers = line.split("=", 1)[1]
        rows, dim = 40000, 32
        path, keys, vectors = make_table(workdir, "updates", rows, dim, seed=21)
        entry = hpsc.model_entry("updates", [path], [dim], gpucacheper=0.5)
        source = {"type": "kafka_message_queue", "brokers": brokers, "poll_timeout_ms": 100, "metadata_refresh_interval_ms": 500}
        config = hpsc.write_config(os.path.join(workdir, "updates.json"), [entry], update_source=source,
                                   volatile_db={"type": "hash_map", "num_partitions": 4})
        server = hpsc.Server(lib, config)
        session = server.session("updates")
        queries = zipf_queries(keys, 4096, 8, seed=5)
        run_batches(lib, session, 0, queries, dim, "cuda:0", stream="own")  # the cache holds the hot rows
        rng = np.random.default_rng(7)
        changed = rng.choice(keys, size=rows // 10, replace=False)
        fresh = np.arange(10**9, 10**9 + 1000, dtype=np.int64)
        upd_keys = np.concatenate([changed, fresh])
        upd_vectors = rng.standard_normal((len(upd_keys), dim)).astype(np.float32)
        kpath, vpath = os.path.join(workdir, "upd.keys"), os.path.join(workdir, "upd.vectors")
        upd_keys.astype("<i8").tofile(kpath)
        upd_vectors.astype("<f4").tofile(vpath)
        stop = threading.Event()

        def lookups_while_updating():
            torch.cuda.set_device(0)
            while not stop.is_set():
                run_batches(lib, session, 0, queries[:2], dim, "cuda:0", stream="own")

        racer = threading.Thread(target=lookups_while_updating)
        racer.start()
        out = subprocess.run([binary, "publish", "--brokers", brokers, "--model", "updates", "--table", "t0",
                              "--keys-file", kpath, "--vectors-file", vpath], capture_output=True, text=True, timeout=120)
        table = dict(zip(keys.tolist(), range(rows)))
        new_vectors = np.concatenate([vectors, upd_vectors[len(changed):]])
        for k, v in zip(changed.tolist(), upd_vectors[:len(changed)]):
            new_vectors[table[k]] = v
        new_keys = np.concatenate([keys, fresh])
        probe = upd_keys
        want_probe = expected(new_keys, new_vectors, probe, 0.5)
        deadline = time.time() + 60
        seen = False
        while out.returncode == 0 and time.time() < deadline:
            host = np.empty((len(probe), dim), dtype=np.float32)
            hpsc.lookup(lib, session, 0, probe, host, hpsc.HOST)
            if host.tobytes() == want_probe.tobytes():
                seen = True
                break
            time.sleep(0.2)
        stop.set()
        racer.join()
        check("online updates: published and seen by host lookups", out.returncode == 0 and seen, out.stderr[-300:])
        time.sleep(1.0)  # the last batch's keys are applied to every tier and cache
        server.wait()
        final = zipf_queries(new_keys, 4096, 8, seed=6)
        outs = run_batches(lib, session, 0, final, dim, "cuda:0", stream="own")
        ok = all(o.tobytes() == expected(new_keys, new_vectors, q, 0.5).tobytes() for q, o in zip(final, outs))
        check("online updates: device-memory lookups return the updated rows (cached, raced and new keys)", ok)
    finally:
        mock.terminate()
        try:
            mock.wait(timeout=20)
        except subprocess.TimeoutExpired:
            mock.kill()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="hps-gpu-check-")
    lib = hpsc.load()
    print("libhps", lib.hps_version().decode(), "devices", torch.cuda.device_count(), flush=True)
    rocks = os.path.join(workdir, "rocks")
    # 1. Dynamic cache (10%) over the hash map: misses from the volatile DB, evictions.
    scenario(lib, workdir, "dyn_hashmap", 50000, 64, {}, {})
    # 2. Dynamic cache over RocksDB only (volatile DB disabled).
    scenario(lib, workdir, "dyn_rocks", 30000, 32, {}, {"volatile_db": {"type": "disabled"}, "persistent_db": {"type": "rocks_db", "path": rocks}})
    # 3. Static table in HBM (unknown keys → default), uvm.
    scenario(lib, workdir, "static", 40000, 128, {"embedding_cache_type": "static"}, {})
    scenario(lib, workdir, "uvm", 40000, 16, {"embedding_cache_type": "uvm", "gpucacheper": 0.3}, {})
    # 4. int32 keys.
    scenario(lib, workdir, "dyn_i32", 20000, 16, {}, {}, i32=True)
    scenario(lib, workdir, "static_i32", 20000, 16, {"embedding_cache_type": "static"}, {}, i32=True)
    # 5. Background insert (threshold 0.9).
    # HPS's plain LRU: every key answered with the default is inserted in the background, so later rounds are
    # exact. With TinyLFU admission (the default) a cold key may be refused a slot and keep getting the default
    # while batches stay above the threshold: only "exact or the default" holds.
    scenario(lib, workdir, "dyn_threshold", 50000, 32, {"hit_rate_threshold": 0.9, "cache_admission": "none"}, {})
    scenario(lib, workdir, "dyn_threshold_tinylfu", 50000, 32, {"hit_rate_threshold": 0.9}, {})
    # 5b. Online updates reach device-memory lookups.
    updates_scenario(lib, workdir)
    # 6. gpucache false: staged through the host.
    scenario(lib, workdir, "nocache", 20000, 16, {"gpucache": False}, {})
    # 7. 8 threads on one session, each on its own stream.
    server, session, keys, vectors, queries, want = scenario(lib, workdir, "threads", 50000, 64, {"gpucacheper": 0.05}, {}, batches=4)
    failures = []

    def work(seed):
        torch.cuda.set_device(0)
        qs = zipf_queries(keys, 4096, 6, seed=seed)
        outs = run_batches(lib, session, 0, qs, 64, "cuda:0", stream="own")
        for q, o in zip(qs, outs):
            if o.tobytes() != expected(keys, vectors, q, 0.5).tobytes():
                failures.append(seed)

    threads = [threading.Thread(target=work, args=(100 + i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    check("8 threads on one session (own streams): bit-exact", not failures, str(failures))
    # 8. Every GPU: one session per device, one thread per device at once.
    count = torch.cuda.device_count()
    if count >= 2:
        path, keys, vectors = make_table(workdir, "multi", 60000, 32, seed=9)
        devices = list(range(count))
        entry = hpsc.model_entry("multi", [path], [32], devices=devices)
        config = hpsc.write_config(os.path.join(workdir, "multi.json"), [entry])
        server = hpsc.Server(lib, config)
        sessions = {d: server.session("multi", d) for d in devices}
        errors = []

        def per_device(d):
            torch.cuda.set_device(d)
            qs = zipf_queries(keys, 4096, 8, seed=d)
            outs = run_batches(lib, sessions[d], 0, qs, 32, "cuda:%d" % d, stream="own")
            for q, o in zip(qs, outs):
                if o.tobytes() != expected(keys, vectors, q, 0.5).tobytes():
                    errors.append(d)

        threads = [threading.Thread(target=per_device, args=(d,)) for d in devices]
        [t.start() for t in threads]
        [t.join() for t in threads]
        check("%d GPUs, one thread each: bit-exact on every device" % count, not errors, str(errors))
        # Many models over the GPUs start and report their memory.
        models = []
        for m in range(24):
            paths = []
            for t in range(4):
                p = os.path.join(workdir, "many_m%d_t%d" % (m, t))
                if not os.path.exists(p):
                    rng = np.random.RandomState(m * 4 + t)
                    hpsc.write_table(p, np.arange(5000, dtype=np.int64), rng.standard_normal((5000, 16)).astype(np.float32))
                paths.append(p)
            models.append(hpsc.model_entry("many%d" % m, paths, [16] * 4, devices=devices))
        config = hpsc.write_config(os.path.join(workdir, "many.json"), models)
        free_before = [torch.cuda.mem_get_info(d)[0] for d in devices]
        t0 = time.time()
        server = hpsc.Server(lib, config)
        took = time.time() - t0
        used = [(free_before[d] - torch.cuda.mem_get_info(d)[0]) / 2**20 for d in devices]
        check("24 models × 4 tables over %d GPUs start" % count, True, "%.1f s, device memory used %s MiB" % (took, ["%.0f" % u for u in used]))
    else:
        print("SKIP multi-GPU checks: %d device(s)" % count)
    passed = sum(results)
    print("%d passed, %d failed" % (passed, len(results) - passed))
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
