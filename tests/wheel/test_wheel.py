"""The wheel of scripts/build-wheel.sh installs and serves on a machine without the Swift toolchain and without
the RocksDB/hiredis system packages: it is installed into a fresh folder, then used in a private mount namespace
(`unshare -m`, root) where /opt/swift is an empty folder and the system's librocksdb, libhiredis, libgflags and
libsnappy are bind-mounted over by /dev/null (so loading them fails), with LD_LIBRARY_PATH unset. There the
`hps` console script looks keys up, TensorFlow serves an hps.LookupLayer, PyTorch an hps.torch.LookupLayer, and
ctypes loads lib/libhps.so — each answer compared with the table files bit for bit."""

import glob
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HIDDEN = ["librocksdb.so.7.8", "libhiredis.so.0.14", "libgflags.so.2.2", "libsnappy.so.1"]
LIBDIR = "/usr/lib/x86_64-linux-gnu"


def can_unshare():
    return shutil.which("unshare") and subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


def write_table(folder, keys, dim, seed):
    """A table directory `folder/table` of `keys` and random float32 vectors of `dim`; returns (path, vectors)."""
    vectors = np.random.default_rng(seed).standard_normal((len(keys), dim)).astype(np.float32)
    table = folder / "table"
    table.mkdir()
    keys.tofile(table / "key")
    vectors.tofile(table / "emb_vector")
    return table, vectors


@pytest.fixture(scope="module")
def wheel():
    wheels = glob.glob(os.path.join(REPO, "dist", "hierarchical_parameter_server-*.whl"))
    if not wheels or os.environ.get("HPS_REBUILD_WHEEL") == "1":
        out = subprocess.run([os.path.join(REPO, "scripts", "build-wheel.sh")], check=True, capture_output=True, text=True)
        wheels = [out.stdout.strip().splitlines()[-1]]
    return max(wheels, key=os.path.getmtime)


def test_wheel_is_tagged_truthfully(wheel):
    name = os.path.basename(wheel)
    assert "-py3-none-manylinux_" in name and name.endswith("_x86_64.whl"), name


@pytest.mark.skipif(not can_unshare(), reason="needs unshare -m (root) to hide the system libraries")
def test_wheel_serves_without_swift_rocksdb_or_hiredis(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), wheel], check=True)
    # A table and a config.
    table, vectors = write_table(tmp_path, keys=np.arange(0, 3000, 3, dtype=np.int64), dim=8, seed=5)
    config = tmp_path / "ps.json"
    config.write_text(json.dumps({"supportlonglong": True, "persistent_db": {"type": "rocks_db", "path": str(tmp_path / "rocks")},
                                  "models": [{"model": "m", "sparse_files": [str(table)], "embedding_table_names": ["t"],
                                              "embedding_vecsize_per_table": [8], "maxnum_catfeature_query_per_table_per_sample": [4],
                                              "default_value_for_each_table": [0.25], "deployed_device_list": [0], "max_batch_size": 16,
                                              "hit_rate_threshold": 1.0, "gpucacheper": 0.5}]}))
    document = json.loads(config.read_text())
    document["persistent_db"]["path"] = str(tmp_path / "rocks_torch")
    (tmp_path / "ps_torch.json").write_text(json.dumps(document))
    query = [0, 3, 2997, 3, 1, 10**12]
    expected = np.array([vectors[k // 3] if k % 3 == 0 and k < 3000 else np.full(8, 0.25, np.float32) for k in query], dtype=np.float32)
    np.save(tmp_path / "expected.npy", expected)
    check = tmp_path / "check.py"
    check.write_text(textwrap.dedent('''
        import ctypes, os, subprocess, sys
        import numpy as np
        site, config, expected = sys.argv[1], sys.argv[2], np.load(sys.argv[3])
        query = %r
        for lib in %r:
            try:
                ctypes.CDLL(lib)
            except OSError:
                pass
            else:
                sys.exit("the system's %%s still loads: the test would prove nothing" %% lib)
        assert not os.path.exists("/opt/swift/usr/bin/swift"), "the Swift toolchain is still visible"
        # The CLI (console script).
        out = subprocess.run([os.path.join(site, "bin", "hps"), "lookup", "--config", config, "--model", "m", "--table", "0",
                              "--keys=" + ",".join(map(str, query))], capture_output=True, text=True, env=dict(os.environ, HPS_LOG_LEVEL="error"))
        assert out.returncode == 0, out.stderr
        rows = [[np.float32(float(v)) for v in line.split()] for line in out.stdout.splitlines() if line.strip()]
        assert np.array(rows, dtype=np.float32).tobytes() == expected.tobytes(), out.stdout
        # TensorFlow.
        import tensorflow as tf
        import hierarchical_parameter_server as hps
        assert hps.__file__.startswith(site), hps.__file__
        hps.Init(global_batch_size=16, ps_config_file=config)
        layer = hps.LookupLayer(model_name="m", table_id=0, emb_vec_size=8, emb_vec_dtype=tf.float32)
        got = layer(tf.constant(query, dtype=tf.int64)).numpy()
        assert got.tobytes() == expected.tobytes()
        # The C API through ctypes, and PyTorch.
        import hierarchical_parameter_server.torch as hps_torch
        import torch
        hps_torch.Init(config.replace("ps.json", "ps_torch.json"))  # its own RocksDB: TF's server holds the first
        got = hps_torch.LookupLayer("m", 0, 8)(torch.tensor(query, dtype=torch.int64)).numpy()
        assert got.tobytes() == expected.tobytes()
        print("wheel OK")
        ''' % (query, HIDDEN)))
    binds = " && ".join("mount --bind /dev/null %s/%s" % (LIBDIR, lib) for lib in HIDDEN if os.path.exists(os.path.join(LIBDIR, lib)))
    hide_swift = "mount -t tmpfs none /opt/swift && " if os.path.isdir("/opt/swift") else ""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "HPS_LIBRARY_PATH", "HPS_C_LIBRARY", "PYTHONPATH")}
    env["PYTHONPATH"] = str(target)
    env["HPS_LOG_LEVEL"] = "error"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    command = "%s && %s%s %s %s %s %s" % (binds, hide_swift, sys.executable, check, target, config, tmp_path / "expected.npy")
    run = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", command], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0 and "wheel OK" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]


OLDEST_TF_VENV = os.path.join(REPO, ".venv-tf-oldest")


@pytest.mark.skipif(not os.path.exists(os.path.join(OLDEST_TF_VENV, "bin", "python")),
                    reason="scripts/setup.sh makes .venv-tf-oldest (TensorFlow 2.16, the oldest of the declared range)")
def test_wheel_serves_with_the_oldest_tensorflow_of_its_range(wheel, tmp_path):
    """The op library declares TensorFlow 2.16–2.21; the other suites run 2.21. Here the same wheel serves an
    hps.LookupLayer (eagerly and inside tf.function) and an hps.SparseLookupLayer under TensorFlow 2.16, with no
    version warning, answers compared with the table files bit for bit."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), wheel], check=True)
    table, vectors = write_table(tmp_path, keys=np.arange(0, 2000, 2, dtype=np.int64), dim=4, seed=11)
    config = tmp_path / "ps.json"
    config.write_text(json.dumps({"supportlonglong": True,
                                  "models": [{"model": "m", "sparse_files": [str(table)], "embedding_table_names": ["t"],
                                              "embedding_vecsize_per_table": [4], "maxnum_catfeature_query_per_table_per_sample": [3],
                                              "default_value_for_each_table": [-1.5], "deployed_device_list": [0], "max_batch_size": 8,
                                              "hit_rate_threshold": 1.0, "gpucacheper": 0.5}]}))
    query = [[0, 2, 1998], [7, 2, 10**12]]
    lookup = {k: vectors[k // 2] if k % 2 == 0 and k < 2000 else np.full(4, -1.5, np.float32) for k in sum(query, [])}
    expected = np.array([[lookup[k] for k in row] for row in query], dtype=np.float32)
    pooled = expected.mean(axis=1)
    np.save(tmp_path / "expected.npy", expected)
    np.save(tmp_path / "pooled.npy", pooled)
    check = tmp_path / "check.py"
    check.write_text(textwrap.dedent('''
        import sys, warnings
        import numpy as np
        warnings.simplefilter("error")  # a version warning fails the check
        import tensorflow as tf
        assert tf.__version__.startswith("2.16."), tf.__version__
        import hierarchical_parameter_server as hps
        site, config, expected, pooled = sys.argv[1], sys.argv[2], np.load(sys.argv[3]), np.load(sys.argv[4])
        assert hps.__file__.startswith(site), hps.__file__
        query = %r
        hps.Init(global_batch_size=8, ps_config_file=config)
        layer = hps.LookupLayer(model_name="m", table_id=0, emb_vec_size=4, emb_vec_dtype=tf.float32)
        assert layer(tf.constant(query, dtype=tf.int64)).numpy().tobytes() == expected.tobytes()
        graph = tf.function(lambda ids: layer(ids))
        assert graph(tf.constant(query, dtype=tf.int64)).numpy().tobytes() == expected.tobytes()
        sparse = hps.SparseLookupLayer(model_name="m", table_id=0, emb_vec_size=4, emb_vec_dtype=tf.float32)
        ids = tf.sparse.from_dense(tf.constant(query, dtype=tf.int64) + 1)
        ids = tf.SparseTensor(ids.indices, ids.values - 1, ids.dense_shape)
        got = sparse(ids, None, combiner="mean").numpy()
        assert np.allclose(got, pooled, rtol=0, atol=1e-6), (got, pooled)
        print("tf", tf.__version__, "OK")
        ''' % (query,)))
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "HPS_LIBRARY_PATH", "HPS_C_LIBRARY", "PYTHONPATH")}
    env["PYTHONPATH"] = str(target)
    env["HPS_LOG_LEVEL"] = "error"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    run = subprocess.run([os.path.join(OLDEST_TF_VENV, "bin", "python"), str(check), str(target), str(config),
                          str(tmp_path / "expected.npy"), str(tmp_path / "pooled.npy")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0 and "OK" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
