"""Benchmark: hps.LookupLayer against tf.nn.embedding_lookup, and hps.SparseLookupLayer against
tf.nn.embedding_lookup_sparse, on the same table and ids, inside tf.function.

For each table (rows × dim) and batch size, both lookups run on the same pre-generated Zipf(α) ids and the
script prints the median (p50) and p90 time per batch, the throughput in million keys per second, and the
ratio HPS / native TF (above 1 means HPS is faster). The sparse case looks up `--sparse-batch` samples of
`--slots` ids each (one SparseTensor row per sample) and combines them with `--combiner`. The native
baseline is measured in the same run, and every case first checks that HPS answers exactly what TF answers.

    python bench/tf_lookup.py                       # 1M×16 and 1M×128 tables, batches 1024/16384/65536
    python bench/tf_lookup.py --hit-rate-threshold 1.0
    python bench/tf_lookup.py --rows 100000 --iters 10 --dims 16   # quick

The HPS side uses the configuration of the HPS notebooks on a machine without a GPU: a hash-map volatile DB
holding the whole table, `gpucache: true` with `gpucacheper` 0.5, `hit_rate_threshold` 0.9,
`deployed_device_list: [0]` (on the CPU such a session looks the hash map up directly). Requires the
package to be installed (`pip install --no-build-isolation .`) or HPS_LIBRARY_PATH + PYTHONPATH=python.
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
    p.add_argument("--gpucacheper", type=float, default=0.5)
    p.add_argument("--hit-rate-threshold", type=float, default=0.9)
    p.add_argument("--sparse-batch", type=int, default=1024, help="samples per sparse lookup (0: no sparse case)")
    p.add_argument("--slots", type=int, default=26, help="ids per sample of the sparse case")
    p.add_argument("--combiner", default="mean", choices=["mean", "sum", "sqrtn"])
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


def finish(row):
    """Adds throughput (million keys per second at p50) and the HPS / TF ratio to a result row."""
    row["tf_mkeys_s"] = row["keys"] / row["tf_p50_ms"] / 1e3
    row["hps_mkeys_s"] = row["keys"] / row["hps_p50_ms"] / 1e3
    row["ratio"] = row["hps_mkeys_s"] / row["tf_mkeys_s"]
    return row


def measure_sparse(args, params, dim, rng):
    """hps.SparseLookupLayer against tf.nn.embedding_lookup_sparse: `sparse_batch` samples of `slots` Zipf ids,
    no weights, `combiner`; checks once that both answer the same bits."""
    layer = hps.SparseLookupLayer(model_name="bench%d" % dim, table_id=0, emb_vec_size=dim, emb_vec_dtype=tf.float32)
    spec = [tf.SparseTensorSpec([None, args.slots], tf.int64)]
    combiner = args.combiner
    native = tf.function(lambda sp: tf.nn.embedding_lookup_sparse(params, sp, None, combiner=combiner), input_signature=spec)
    served = tf.function(lambda sp: layer(sp, None, combiner=combiner), input_signature=spec)
    batch, slots = args.sparse_batch, args.slots
    indices = np.stack([np.repeat(np.arange(batch), slots), np.tile(np.arange(slots), batch)], axis=1).astype(np.int64)
    batches, unique = [], []
    for _ in range(args.distinct_batches):
        ids = zipf_ids(args.rows, args.alpha, (batch * slots,), rng)
        unique.append(len(np.unique(ids)) / ids.size)
        batches.append(tf.SparseTensor(indices=indices, values=tf.constant(ids), dense_shape=[batch, slots]))
    np.testing.assert_array_equal(served(batches[0]).numpy(), native(batches[0]).numpy())
    t_native = time_calls(native, batches, args.warmup, args.iters)
    t_hps = time_calls(served, batches, args.warmup, args.iters)
    return finish({
        "case": "sparse " + combiner, "rows": args.rows, "dim": dim, "batch": batch, "keys": batch * slots,
        "unique_fraction": float(np.mean(unique)),
        "tf_p50_ms": float(np.median(t_native) * 1e3), "tf_p90_ms": float(np.percentile(t_native, 90) * 1e3),
        "hps_p50_ms": float(np.median(t_hps) * 1e3), "hps_p90_ms": float(np.percentile(t_hps, 90) * 1e3),
    })


def main():
    args = parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="hps_bench_")
    os.makedirs(workdir, exist_ok=True)
    rng = np.random.RandomState(0)
    try:
        arrays, models = {}, []
        max_batch = max(args.batches + [args.sparse_batch * args.slots])
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
                np.testing.assert_array_equal(served(batches[0]).numpy(), native(batches[0]).numpy())
                t_native = time_calls(native, batches, args.warmup, args.iters)
                t_hps = time_calls(served, batches, args.warmup, args.iters)
                row = {
                    "case": "dense", "rows": args.rows, "dim": dim, "batch": batch, "keys": batch, "unique_fraction": float(unique),
                    "tf_p50_ms": float(np.median(t_native) * 1e3), "tf_p90_ms": float(np.percentile(t_native, 90) * 1e3),
                    "hps_p50_ms": float(np.median(t_hps) * 1e3), "hps_p90_ms": float(np.percentile(t_hps, 90) * 1e3),
                }
                results.append(finish(row))
                print("  %d×%d batch %d done" % (args.rows, dim, batch), flush=True)
            if args.sparse_batch > 0:
                results.append(measure_sparse(args, params, dim, rng))
                print("  %d×%d sparse batch %d × %d done" % (args.rows, dim, args.sparse_batch, args.slots), flush=True)

        print()
        print("date: %s" % datetime.datetime.now().isoformat(timespec="seconds"))
        print("machine: %s, %s, %d CPUs; TensorFlow %s; hierarchical_parameter_server %s" % (
            platform.node(), platform.processor() or platform.machine(), os.cpu_count(), tf.__version__, hps.__version__))
        print("command: %s" % " ".join([os.path.basename(sys.executable)] + sys.argv))
        print("ids: Zipf α=%.2f over %d rows; HPS cache gpucacheper %.2f, hit_rate_threshold %.2f; %d timed batches after %d warm-up"
              % (args.alpha, args.rows, args.gpucacheper, args.hit_rate_threshold, args.iters, args.warmup))
        print()
        print("| case | table | batch | unique | TF p50 ms | TF p90 ms | TF Mkeys/s | HPS p50 ms | HPS p90 ms | HPS Mkeys/s | HPS / TF |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in results:
            batch = "%d" % r["batch"] if r["case"] == "dense" else "%d × %d" % (r["batch"], args.slots)
            print("| %s | %d×%d | %s | %.0f%% | %.3f | %.3f | %.1f | %.3f | %.3f | %.1f | %.2f |" % (
                r["case"], r["rows"], r["dim"], batch, 100 * r["unique_fraction"], r["tf_p50_ms"], r["tf_p90_ms"], r["tf_mkeys_s"],
                r["hps_p50_ms"], r["hps_p90_ms"], r["hps_mkeys_s"], r["ratio"]))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
