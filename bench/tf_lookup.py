"""Benchmark: hps.LookupLayer against tf.nn.embedding_lookup on the same table, inside tf.function.

For each table (rows × dim) and batch size, both lookups run on the same pre-generated Zipf(α) ids and the
script prints the median (p50) and p90 time per batch, the throughput in million keys per second, and the
ratio HPS / native TF (above 1 means HPS is faster). The native baseline is measured in the same run.

    python bench/tf_lookup.py                       # 1M×16 and 1M×128 tables, batches 1024/16384/65536
    python bench/tf_lookup.py --rows 100000 --iters 10 --dims 16   # quick

The HPS side uses a hash-map volatile DB holding the whole table and a CPU dynamic cache of `--gpucacheper`
of the rows (HPS's defaults: 0.2 and hit_rate_threshold 0.9). Requires the package to be installed
(`pip install --no-build-isolation .`) or HPS_LIBRARY_PATH + PYTHONPATH=python.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HPS_LOG_LEVEL", "warning")

import tensorflow as tf  # noqa: E402

import hierarchical_parameter_server as hps  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dims", type=int, nargs="+", default=[16, 128])
    p.add_argument("--batches", type=int, nargs="+", default=[1024, 16384, 65536])
    p.add_argument("--alpha", type=float, default=1.05, help="Zipf exponent of the ids")
    p.add_argument("--iters", type=int, default=50, help="timed batches per case")
    p.add_argument("--warmup", type=int, default=10, help="untimed batches per case (fill the cache)")
    p.add_argument("--distinct-batches", type=int, default=20, help="distinct id batches cycled through")
    p.add_argument("--gpucacheper", type=float, default=0.2)
    p.add_argument("--hit-rate-threshold", type=float, default=0.9)
    p.add_argument("--workdir", default=None, help="where tables and config go (default: a temp dir, removed)")
    p.add_argument("--json", default=None, help="also write the results as JSON here")
    return p.parse_args()


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


def time_calls(fn, batches, warmup, iters):
    for i in range(warmup):
        fn(batches[i % len(batches)])
    times = []
    for i in range(iters):
        ids = batches[i % len(batches)]
        start = time.perf_counter()
        fn(ids)
        times.append(time.perf_counter() - start)
    return np.array(times)


def main():
    args = parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="hps_bench_")
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
        assert hps.Init(global_batch_size=max_batch, ps_config_file=config) == "OK"
        print("hps.Init: %.1f s (%d tables of %d rows)" % (time.perf_counter() - start, len(args.dims), args.rows))

        results = []
        for dim in args.dims:
            params = tf.constant(arrays[dim])
            layer = hps.LookupLayer(model_name="bench%d" % dim, table_id=0, emb_vec_size=dim, emb_vec_dtype=tf.float32)
            spec = [tf.TensorSpec([None], tf.int64)]
            native = tf.function(lambda ids: tf.nn.embedding_lookup(params, ids), input_signature=spec)
            served = tf.function(lambda ids: layer(ids), input_signature=spec)
            for batch in args.batches:
                batches = [tf.constant(zipf_ids(args.rows, args.alpha, (batch,), rng)) for _ in range(args.distinct_batches)]
                unique = np.mean([len(np.unique(b.numpy())) / batch for b in batches])
                if args.hit_rate_threshold >= 1.0:  # exact answers: check once
                    np.testing.assert_array_equal(served(batches[0]).numpy(), native(batches[0]).numpy())
                t_native = time_calls(native, batches, args.warmup, args.iters)
                t_hps = time_calls(served, batches, args.warmup, args.iters)
                row = {
                    "rows": args.rows, "dim": dim, "batch": batch, "unique_fraction": float(unique),
                    "tf_p50_ms": float(np.median(t_native) * 1e3), "tf_p90_ms": float(np.percentile(t_native, 90) * 1e3),
                    "hps_p50_ms": float(np.median(t_hps) * 1e3), "hps_p90_ms": float(np.percentile(t_hps, 90) * 1e3),
                }
                row["tf_mkeys_s"] = batch / row["tf_p50_ms"] / 1e3
                row["hps_mkeys_s"] = batch / row["hps_p50_ms"] / 1e3
                row["ratio"] = row["hps_mkeys_s"] / row["tf_mkeys_s"]
                results.append(row)
                print("  %d×%d batch %d done" % (args.rows, dim, batch), flush=True)

        print()
        print("date: %s" % datetime.datetime.now().isoformat(timespec="seconds"))
        print("machine: %s, %s, %d CPUs; TensorFlow %s; hierarchical_parameter_server %s" % (
            platform.node(), platform.processor() or platform.machine(), os.cpu_count(), tf.__version__, hps.__version__))
        print("command: %s" % " ".join([os.path.basename(sys.executable)] + sys.argv))
        print("ids: Zipf α=%.2f over %d rows; HPS cache gpucacheper %.2f, hit_rate_threshold %.2f; %d timed batches after %d warm-up"
              % (args.alpha, args.rows, args.gpucacheper, args.hit_rate_threshold, args.iters, args.warmup))
        print()
        print("| table | batch | unique | TF p50 ms | TF p90 ms | TF Mkeys/s | HPS p50 ms | HPS p90 ms | HPS Mkeys/s | HPS / TF |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in results:
            print("| %d×%d | %d | %.0f%% | %.3f | %.3f | %.1f | %.3f | %.3f | %.1f | %.2f |" % (
                r["rows"], r["dim"], r["batch"], 100 * r["unique_fraction"], r["tf_p50_ms"], r["tf_p90_ms"], r["tf_mkeys_s"],
                r["hps_p50_ms"], r["hps_p90_ms"], r["hps_mkeys_s"], r["ratio"]))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
