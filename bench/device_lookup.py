"""Device-resident lookups on a GPU, beside torch's in-HBM embedding in the same run (NV Embedding Cache's
benchmark configuration: fp32, dim 128, Zipf α 1.05 over the rows with the hot keys scattered by a random
permutation, 256 × 1024 = 262,144 keys per call, keys already on the device, output written on the device,
timed calls after warm-up, then one synchronize).

    HPS_C_LIBRARY=gpu-bin/libhps.so python bench/device_lookup.py [--rows-log2 24] [--host-rows-log2 22] [--calls 1000]

(a) torch.nn.functional.embedding, the whole table in HBM (the baseline);
(b) ours, a static table in HBM, device-memory lookups through the C API;
(c) ours, the table in the host hash map behind a dynamic GPU cache of 10% of the rows, threshold 1.0 and 0.9:
    keys/s, p50/p99 per call, steady-state hit rate (distinct keys), the same at 1,024 keys per call, load GB/s;
(d) the staged host path on (c)'s configuration (HPS_HOST_LOOKUPS_ON_DEVICE=0): keys copied to the host, a
    host-memory lookup that stages every cache call, vectors copied back — what every client paid before;
(e) the same host-memory lookups through the device path (keys in once, vectors out once), what the TF op gets.
Prints a table of keys/s and ratios to (a); --json FILE writes the numbers."""

import argparse
import ctypes
import json
import os
import resource
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "gpu"))
import hpsc  # noqa: E402


def zipf_batches(rows, n, batches, alpha, device, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    ranks = torch.arange(1, rows + 1, dtype=torch.float64)
    cdf = torch.cumsum(ranks.pow(-alpha), 0)
    cdf /= cdf[-1].clone()
    perm = torch.randperm(rows, generator=g)
    cdf, perm = cdf.to(device), perm.to(device)
    out = []
    for b in range(batches):
        u = torch.rand(n, generator=g, dtype=torch.float64).to(device)
        r = torch.searchsorted(cdf, u).clamp_(max=rows - 1)
        out.append(perm[r].to(torch.int64).contiguous())
    return out


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def time_calls(fn, batches, warmup, calls):
    for i in range(warmup):
        fn(batches[i % len(batches)])
    torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(calls):
        fn(batches[(warmup + i) % len(batches)])
    torch.cuda.synchronize()
    return time.perf_counter() - start


def per_call_latency(fn, batches, calls):
    times = []
    for i in range(calls):
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn(batches[i % len(batches)])
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2] * 1e6, times[int(len(times) * 0.99)] * 1e6


def write_table(path, rows, dim, seed):
    """Keys 0..rows-1; vectors: one seeded random block of 2^20 rows, repeated with a per-block offset (fast to
    write, distinct rows). Written in chunks (bounded memory); kept when it already exists with the right size."""
    os.makedirs(path, exist_ok=True)
    kp, vp = os.path.join(path, "key"), os.path.join(path, "emb_vector")
    if os.path.exists(vp) and os.path.getsize(vp) == rows * dim * 4 and os.path.getsize(kp) == rows * 8:
        return path
    rng = np.random.default_rng(seed)
    chunk = 1 << 20
    block = rng.standard_normal((chunk, dim), dtype=np.float32)
    t0 = time.time()
    with open(kp, "wb") as k, open(vp, "wb") as v:
        for start in range(0, rows, chunk):
            m = min(chunk, rows - start)
            np.arange(start, start + m, dtype="<i8").tofile(k)
            (block[:m] + np.float32(start >> 20)).tofile(v)
    print("wrote %s: %d rows × dim %d in %.1f s" % (path, rows, dim, time.time() - t0), flush=True)
    return path


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows-log2", type=int, default=26, help="rows of the HBM tables of (a) and (b)")
    p.add_argument("--host-rows-log2", type=int, default=26, help="rows of the host-table configuration (c), (d)")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--keys", type=int, default=262144)
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--alpha", type=float, default=1.05)
    p.add_argument("--workdir", default=None)
    p.add_argument("--only", default="abcd")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="hps-bench-")
    lib = hpsc.load()
    dev = torch.device("cuda:0")
    stream = torch.cuda.current_stream(dev)
    sp = ctypes.c_void_p(stream.cuda_stream)
    rows, dim, n = 1 << args.rows_log2, args.dim, args.keys
    results = {"config": vars(args), "device": torch.cuda.get_device_name(0), "rows": rows}
    print("device %s, torch %s, libhps %s" % (results["device"], torch.__version__, lib.hps_version().decode()), flush=True)
    # Fresh keys for every call (warm-up and timed): a workload that repeats would end up entirely cached.
    fresh = args.warmup + args.calls + 210
    batches = zipf_batches(rows, n, fresh, args.alpha, dev)
    uniq = np.mean([len(torch.unique(b)) for b in batches[:4]])
    print("workload: %d rows × dim %d, %d keys/call, %.0f distinct keys/call" % (rows, dim, n, uniq), flush=True)
    rows_out = []

    # (a) torch embedding, whole table in HBM.
    if "a" in args.only or "b" in args.only:
        weight = torch.randn(rows, dim, device=dev)
        out = torch.empty(n, dim, device=dev)
        secs = time_calls(lambda k: torch.nn.functional.embedding(k, weight), batches, args.warmup, args.calls)
        base = n * args.calls / secs
        results["a"] = base
        rows_out.append(("(a) torch F.embedding, table in HBM", base, 1.0))
        print("(a) %.0f M keys/s" % (base / 1e6), flush=True)
        # The output alone: writing n × dim floats (fill) and copying them (read + write), the bounds of (b).
        other = torch.empty(n, dim, device=dev)
        fill = n * args.calls / time_calls(lambda k: out.fill_(1.0), batches, 10, args.calls)
        copy = n * args.calls / time_calls(lambda k: out.copy_(other), batches, 10, args.calls)
        results["write_limit"], results["copy_limit"] = fill, copy
        print("output bounds: write-only fill %.0f M rows/s (%.2fx (a)), copy %.0f M rows/s (%.2fx (a))" % (fill / 1e6, fill / base, copy / 1e6, copy / base), flush=True)
        del other
        del weight
        torch.cuda.empty_cache()
    else:
        base = float("nan")

    # (b) static table in HBM through the C API.
    if "b" in args.only:
        path = write_table(os.path.join(workdir, "table_%d_%d" % (rows, dim)), rows, dim, 1)
        entry = hpsc.model_entry("hbm", [path], [dim], embedding_cache_type="static", max_batch_size=n // 64)
        config = hpsc.write_config(os.path.join(workdir, "hbm.json"), [entry], volatile_db={"type": "disabled"})
        t0 = time.time()
        server = hpsc.Server(lib, config)
        session = server.session("hbm")
        print("(b) loaded %d rows into the static table in %.1f s" % (rows, time.time() - t0), flush=True)
        out = torch.empty(n, dim, device=dev)
        fn = lambda k: hpsc.lookup(lib, session, 0, k, out, hpsc.DEVICE, sp)
        secs = time_calls(fn, batches, args.warmup, args.calls)
        kps = n * args.calls / secs
        results["b"] = kps
        rows_out.append(("(b) ours, static table in HBM (C API, device memory)", kps, kps / base))
        print("(b) %.0f M keys/s = %.2fx (a)" % (kps / 1e6, kps / base), flush=True)
        lib.hps_session_destroy(session)
        lib.hps_server_destroy(server.handle)
        del out
        torch.cuda.empty_cache()

    # (c) host hash map + 10% dynamic GPU cache; (d) host-staged.
    if "c" in args.only or "d" in args.only:
        hrows = 1 << args.host_rows_log2
        hbatches = batches if hrows == rows else zipf_batches(hrows, n, fresh, args.alpha, dev, seed=1)
        tail = hbatches[args.warmup + args.calls:]
        small = [b[i:i + 1024].contiguous() for b in tail[200:] for i in range(0, n, 1024)]
        path = write_table(os.path.join(workdir, "table_%d_%d" % (hrows, dim)), hrows, dim, 1)
        raw = hrows * (8 + dim * 4)
        for threshold in (1.0, 0.9):
            entry = hpsc.model_entry("host%d" % int(threshold * 10), [path], [dim], gpucacheper=0.1, hit_rate_threshold=threshold, max_batch_size=n // 64)
            config = hpsc.write_config(os.path.join(workdir, "host%d.json" % int(threshold * 10)), [entry])
            rss0 = rss_mib()
            t0 = time.time()
            server = hpsc.Server(lib, config)
            load = time.time() - t0
            rss1 = rss_mib()
            session = server.session(entry["model"])
            print("(c) threshold %.1f: loaded %d rows (%.2f GB) in %.1f s = %.2f GB/s; RSS +%.0f MiB = %.2fx raw"
                  % (threshold, hrows, raw / 1e9, load, raw / 1e9 / load, rss1 - rss0, (rss1 - rss0) * 2**20 / raw), flush=True)
            out = torch.empty(n, dim, device=dev)
            fn = lambda k: hpsc.lookup(lib, session, 0, k, out, hpsc.DEVICE, sp)
            if "c" in args.only:
                for i in range(args.warmup):
                    fn(hbatches[i])
                server.wait()
                s0 = server.statistics()
                secs = time_calls(fn, hbatches[args.warmup:], 0, args.calls)
                s1 = server.statistics()
                hits, misses = s1["hits"] - s0["hits"], s1["misses"] - s0["misses"]
                hit_rate = hits / max(1, hits + misses)
                kps = n * args.calls / secs
                p50, p99 = per_call_latency(fn, tail[:200], 200)
                sp50, sp99 = per_call_latency(lambda k: hpsc.lookup(lib, session, 0, k, out[:1024], hpsc.DEVICE, sp), small, 500)
                t_small = time_calls(lambda k: hpsc.lookup(lib, session, 0, k, out[:1024], hpsc.DEVICE, sp), small, 50, 2000)
                results["c%.1f" % threshold] = dict(kps=kps, ratio=kps / base, p50_us=p50, p99_us=p99, hit_rate_distinct=hit_rate,
                                                    small_kps=1024 * 2000 / t_small, small_p50_us=sp50, small_p99_us=sp99,
                                                    load_gbps=raw / 1e9 / load, rss_ratio=(rss1 - rss0) * 2**20 / raw)
                rows_out.append(("(c) ours, host hash map + 10%% GPU cache, threshold %.1f (hit rate %.3f of distinct keys; p50 %.0f µs, p99 %.0f µs; 1024 keys: %.1f M keys/s, p50 %.0f µs)"
                                 % (threshold, hit_rate, p50, p99, 1024 * 2000 / t_small / 1e6, sp50), kps, kps / base))
                print("(c) threshold %.1f: %.0f M keys/s = %.2fx (a); hit rate %.3f; p50 %.0f µs p99 %.0f µs; at 1024 keys %.1f M keys/s p50 %.0f µs p99 %.0f µs"
                      % (threshold, kps / 1e6, kps / base, hit_rate, p50, p99, 1024 * 2000 / t_small / 1e6, sp50, sp99), flush=True)
            if "d" in args.only and threshold == 1.0:
                host_out = np.empty((n, dim), dtype=np.float32)

                def staged(k):
                    keys = k.cpu().numpy()
                    hpsc.lookup(lib, session, 0, keys, host_out, hpsc.HOST)
                    out.copy_(torch.from_numpy(host_out), non_blocking=False)

                calls = max(50, args.calls // 10)
                secs = time_calls(staged, hbatches[args.warmup:], 0, calls)
                kps = n * calls / secs
                results["e"] = kps
                rows_out.append(("(e) host-memory lookups through the device path on (c) (keys in and vectors out over PCIe)", kps, kps / base))
                print("(e) %.0f M keys/s = %.2fx (a)" % (kps / 1e6, kps / base), flush=True)
                lib.hps_session_destroy(session)
                lib.hps_server_destroy(server.handle)
                os.environ["HPS_HOST_LOOKUPS_ON_DEVICE"] = "0"
                server = hpsc.Server(lib, config)
                session = server.session(entry["model"])
                os.environ.pop("HPS_HOST_LOOKUPS_ON_DEVICE")
                for i in range(20):
                    staged(hbatches[i])
                secs = time_calls(staged, hbatches[args.warmup:], 0, calls)
                kps = n * calls / secs
                results["d"] = kps
                rows_out.append(("(d) the staged host path before the device path (every cache call staged), on (c)", kps, kps / base))
                print("(d) %.0f M keys/s = %.2fx (a)" % (kps / 1e6, kps / base), flush=True)
            lib.hps_session_destroy(session)
            lib.hps_server_destroy(server.handle)
    print()
    print("| configuration | M keys/s | × (a) |")
    print("|---|---:|---:|")
    for name, kps, ratio in rows_out:
        print("| %s | %.0f | %.2fx |" % (name, kps / 1e6, ratio))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
