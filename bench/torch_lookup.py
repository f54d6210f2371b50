"""Benchmark: hierarchical_parameter_server.torch.LookupLayer beside torch.nn.functional.embedding on the
same table.

For each table (rows × dim) and batch size, both lookups run on the same pre-generated Zipf(α) ids and the
script prints the median (p50) and p90 time per batch, the throughput in million keys per second and the
ratio HPS / F.embedding in keys/s (above 1 means HPS is faster). F.embedding gathers from the table held
as one torch tensor in the same process (in host memory for CPU ids, in device memory for CUDA ids),
measured in the same run. The column "C API" is the same HPS lookup called straight through ctypes into a
fresh ``torch.empty`` output (as the layer and F.embedding must allocate one), so "HPS layer" minus "C API"
is what the Python layer (module call, argument checks, key cache) adds. The three are timed in turn on the same batch in every iteration (CUDA: synchronized
after each call), so the cache warming up during the run favours none of them.

    python bench/torch_lookup.py                 # 1M×16 and 1M×128, batches 1024 and 65536, CPU (+ CUDA if present)
    python bench/torch_lookup.py --quick         # 100k rows, fewer iterations: a smoke run in seconds
    python bench/torch_lookup.py --device cuda   # CUDA tensors only

The HPS side uses a hash-map volatile DB holding the whole table and a dynamic cache (on the GPU when the
configuration's device is a GPU with CUDA, else on the CPU) of `--gpucacheper` of the rows, with
`--hit-rate-threshold` (defaults 0.2 and 0.9, HPS's defaults, as bench/tf_lookup.py). Requires the package
to be installed (`pip install --no-build-isolation .`), or PYTHONPATH=python and HPS_C_LIBRARY=<libHPSCAPI.so>.
"""

import argparse
import datetime
import itertools
import json
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("HPS_LOG_LEVEL", "warning")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import hierarchical_parameter_server as hps  # noqa: E402
import hierarchical_parameter_server.torch as hps_torch  # noqa: E402
from hierarchical_parameter_server.torch import ops as hps_ops  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dims", type=int, nargs="+", default=[16, 128])
    p.add_argument("--batches", type=int, nargs="+", default=[1024, 65536])
    p.add_argument("--alpha", type=float, default=1.05, help="Zipf exponent of the ids")
    p.add_argument("--iters", type=int, default=60, help="timed batches per case")
    p.add_argument("--warmup", type=int, default=10, help="untimed batches per case (fill the cache)")
    p.add_argument("--distinct-batches", type=int, default=20, help="distinct id batches cycled through")
    p.add_argument("--gpucacheper", type=float, default=0.2)
    p.add_argument("--hit-rate-threshold", type=float, default=0.9)
    p.add_argument("--device", choices=["all", "cpu", "cuda"], default="all",
                   help="ids on the CPU, on CUDA, or both (CUDA only when torch.cuda.is_available())")
    p.add_argument("--quick", action="store_true", help="100k rows, 10 timed batches, 3 warm-up: a smoke run")
    p.add_argument("--workdir", default=None, help="where tables and config go (default: a temp dir, removed)")
    p.add_argument("--json", default=None, help="also write the results as JSON here")
    args = p.parse_args()
    if args.quick:
        args.rows, args.iters, args.warmup, args.distinct_batches = min(args.rows, 100_000), 12, 3, 5
    return args


def zipf_ids(rows, alpha, shape, rng, cdf_cache={}):
    """Ids in [0, rows) with P(rank k) ∝ 1/k^alpha; ranks are mapped to keys by a fixed permutation, so
    hot keys are spread over the table."""
    key = (rows, alpha)
    if key not in cdf_cache:
        weights = 1.0 / np.power(np.arange(1, rows + 1, dtype=np.float64), alpha)
        cdf = np.cumsum(weights)
        cdf /= cdf[-1]
        perm = np.random.RandomState(1234).permutation(rows).astype(np.int64)
        cdf_cache[key] = (cdf, perm)
    cdf, perm = cdf_cache[key]
    ranks = np.searchsorted(cdf, rng.random_sample(int(np.prod(shape))), side="right")
    return perm[np.minimum(ranks, rows - 1)].reshape(shape)


def time_interleaved(fns, batches, warmup, iters, cuda):
    """Times each function of ``fns`` on the same batch, one after the other in every iteration, cycling
    through every order, so neither a cache that warms up during the run nor what one call leaves behind
    for the next (torch's spinning intra-op threads, freed memory) favours any of them. Returns one array of
    seconds per function."""
    for i in range(warmup):
        for fn in fns:
            fn(batches[i % len(batches)])
    if cuda:
        torch.cuda.synchronize()
    times = [[] for _ in fns]
    orders = list(itertools.permutations(range(len(fns))))  # each follows each equally often
    for i in range(iters):
        ids = batches[i % len(batches)]
        for j in orders[i % len(orders)]:
            start = time.perf_counter()
            fns[j](ids)
            if cuda:
                torch.cuda.synchronize()
            times[j].append(time.perf_counter() - start)
    return [np.array(t) for t in times]


def main():
    args = parse_args()
    devices = []
    if args.device in ("all", "cpu"):
        devices.append("cpu")
    if args.device in ("all", "cuda"):
        if torch.cuda.is_available():
            devices.append("cuda")
        elif args.device == "cuda":
            sys.exit("--device cuda: torch.cuda is not available")
    workdir = args.workdir or tempfile.mkdtemp(prefix="hps_torch_bench_")
    os.makedirs(workdir, exist_ok=True)
    rng = np.random.RandomState(0)
    try:
        arrays, models = {}, []
        max_batch = max(args.batches)
        for dim in args.dims:
            array = rng.uniform(-1, 1, size=(args.rows, dim)).astype(np.float32)
            arrays[dim] = array
            path = hps.export_table(os.path.join(workdir, "table_%d" % dim), array)
            models.append({
                "model": "bench%d" % dim, "sparse_files": [path], "embedding_table_names": ["sparse_embedding0"],
                "embedding_vecsize_per_table": [dim], "maxnum_catfeature_query_per_table_per_sample": [1],
                "default_value_for_each_table": [0.0], "deployed_device_list": [0], "max_batch_size": max_batch,
                "gpucache": True, "gpucacheper": args.gpucacheper, "hit_rate_threshold": args.hit_rate_threshold,
                "num_of_worker_buffer_in_pool": 4,
            })
        config = os.path.join(workdir, "bench.json")
        with open(config, "w") as f:
            json.dump({"supportlonglong": True, "models": models}, f)
        start = time.perf_counter()
        assert hps_torch.Init(config) == "OK"
        print("Init: %.1f s (%d tables of %d rows)" % (time.perf_counter() - start, len(args.dims), args.rows), flush=True)

        results = []
        for device in devices:
            cuda = device == "cuda"
            for dim in args.dims:
                weight = torch.from_numpy(arrays[dim]).to(device)
                layer = hps_torch.LookupLayer("bench%d" % dim, 0, dim)
                for batch in args.batches:
                    batches = [torch.from_numpy(zipf_ids(args.rows, args.alpha, (batch,), rng)).to(device)
                               for _ in range(args.distinct_batches)]
                    unique = np.mean([torch.unique(b).numel() / batch for b in batches])
                    bound, memory, _ = hps_ops._resolve(batches[0], "bench%d" % dim, 0, dim, "")
                    def direct(ids):
                        stream = torch.cuda.current_stream().cuda_stream if cuda else None
                        hps_ops.lookup_into(ids, torch.empty(batch, dim, device=device), bound, memory, stream)

                    def native(ids):
                        F.embedding(ids, weight)

                    with torch.inference_mode():
                        if args.hit_rate_threshold >= 1.0:  # exact answers: check once
                            assert torch.equal(layer(batches[0]), F.embedding(batches[0], weight))
                        hps_torch.wait()  # no background cache inserts of an earlier case compete with the baseline
                        t_native, t_hps, t_direct = time_interleaved([native, layer, direct], batches, args.warmup, args.iters, cuda)
                    row = {"device": device, "rows": args.rows, "dim": dim, "batch": batch, "unique_fraction": float(unique)}
                    for name, t in (("torch", t_native), ("hps", t_hps), ("capi", t_direct)):
                        row[name + "_p50_ms"] = float(np.median(t) * 1e3)
                        row[name + "_p90_ms"] = float(np.percentile(t, 90) * 1e3)
                        row[name + "_mkeys_s"] = batch / row[name + "_p50_ms"] / 1e3
                    row["ratio"] = row["hps_mkeys_s"] / row["torch_mkeys_s"]
                    row["p50_ratio"] = row["hps_p50_ms"] / row["torch_p50_ms"]
                    results.append(row)
                    print("  %s %d×%d batch %d done" % (device, args.rows, dim, batch), flush=True)
                del weight

        print()
        print("date: %s" % datetime.datetime.now().isoformat(timespec="seconds"))
        gpu = " + %s" % torch.cuda.get_device_name() if "cuda" in devices else ""
        print("machine: %s, %s, %d CPUs%s; torch %s (%d threads); hierarchical_parameter_server %s, C library %s" % (
            platform.node(), platform.processor() or platform.machine(), os.cpu_count(), gpu, torch.__version__,
            torch.get_num_threads(), hps.__version__, hps_torch.c_library_version()))
        print("command: %s" % " ".join([os.path.basename(sys.executable)] + sys.argv))
        print("ids: Zipf α=%.2f over %d rows; HPS cache gpucacheper %.2f, hit_rate_threshold %.2f; %d timed batches after %d warm-up"
              % (args.alpha, args.rows, args.gpucacheper, args.hit_rate_threshold, args.iters, args.warmup))
        print()
        print("| ids | table | batch | unique | F.embedding p50 ms | Mkeys/s | HPS layer p50 ms | p90 ms | Mkeys/s | C API p50 ms "
              "| HPS / F.embedding (keys/s) | HPS p50 / F.embedding p50 |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in results:
            print("| %s | %d×%d | %d | %.0f%% | %.3f | %.1f | %.3f | %.3f | %.1f | %.3f | %.2f | %.2f |" % (
                r["device"], r["rows"], r["dim"], r["batch"], 100 * r["unique_fraction"], r["torch_p50_ms"], r["torch_mkeys_s"],
                r["hps_p50_ms"], r["hps_p90_ms"], r["hps_mkeys_s"], r["capi_p50_ms"], r["ratio"], r["p50_ratio"]))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
