"""End-to-end tests of the `hps` command-line tool against tables and configs written with NumPy.

The binary is $HPS_BIN, else .build/release/hps, else .build/debug/hps. Answers are compared bit for bit
with the NumPy arrays the tables were written from.
"""

import json
import os
import struct
import subprocess

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def hps_binary():
    for candidate in (os.environ.get("HPS_BIN"), os.path.join(REPO, ".build/release/hps"), os.path.join(REPO, ".build/debug/hps")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("no hps binary: run scripts/setup.sh (or set HPS_BIN)")


def run(*args, check=True):
    env = dict(os.environ, HPS_LOG_LEVEL="warning")
    result = subprocess.run([hps_binary(), *args], capture_output=True, text=True, env=env, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError("hps %s failed (%d):\n%s" % (" ".join(args)[:300], result.returncode, result.stderr[:2000]))
    return result


def write_table(path, keys, vectors):
    os.makedirs(path, exist_ok=True)
    np.asarray(keys, dtype="<i8").tofile(os.path.join(path, "key"))
    np.asarray(vectors, dtype="<f4").tofile(os.path.join(path, "emb_vector"))


@pytest.fixture
def deployment(tmp_path):
    rng = np.random.default_rng(1)
    tables = {}
    for name, rows, dim in (("item", 5000, 16), ("user", 800, 7)):
        keys = rng.choice(np.arange(-10**12, 10**12, 7919, dtype=np.int64), size=rows, replace=False)
        vectors = rng.standard_normal((rows, dim)).astype(np.float32)
        vectors[0, 0] = np.float32(1e-45)  # a denormal must round-trip too
        write_table(str(tmp_path / name), keys, vectors)
        tables[name] = (keys, vectors)

    def config(**model_overrides):
        model = {
            "model": "m",
            "sparse_files": [str(tmp_path / "item"), str(tmp_path / "user")],
            "embedding_table_names": ["item", "user"],
            "embedding_vecsize_per_table": [16, 7],
            "maxnum_catfeature_query_per_table_per_sample": [4, 2],
            "default_value_for_each_table": [0.5, -3.0],
            "deployed_device_list": [0],
            "max_batch_size": 64,
            "hit_rate_threshold": 1.0,
            "gpucacheper": 0.05,
        }
        volatile = model_overrides.pop("volatile_db", None)
        model.update(model_overrides)
        document = {"supportlonglong": True, "models": [model]}
        if volatile is not None:
            document["volatile_db"] = volatile
        path = tmp_path / ("config-%d.json" % len(list(tmp_path.glob("config-*.json"))))
        path.write_text(json.dumps(document))
        return str(path)

    return tmp_path, tables, config


def expected(tables, name, default, query):
    keys, vectors = tables[name]
    index = {int(k): i for i, k in enumerate(keys)}
    dim = vectors.shape[1]
    return np.stack([vectors[index[k]] if k in index else np.full(dim, default, np.float32) for k in query])


def parse_lines(text, dim):
    rows = [np.array([np.float32(x) for x in line.split(" ")], dtype=np.float32) for line in text.strip().split("\n")]
    for row in rows:
        assert row.shape == (dim,)
    return np.stack(rows)


def query_keys(tables, name, rng, n=600):
    keys = tables[name][0]
    known = rng.choice(keys, size=n - 20)
    unknown = np.array([1, 2, 3, -5, 2**62] * 4, dtype=np.int64)
    out = np.concatenate([known, unknown, known[:30]])  # duplicates too
    rng.shuffle(out)
    return [int(k) for k in out]


@pytest.mark.parametrize(
    "overrides",
    [
        {"gpucache": True},
        {"gpucache": False},
        {"embedding_cache_type": "static"},
        {"gpucache": True, "hit_rate_threshold": 1.0, "cache_refresh_percentage_per_iteration": 0.5},
    ],
)
def test_lookup_is_bit_exact(deployment, overrides):
    _, tables, config = deployment
    path = config(**overrides)
    rng = np.random.default_rng(7)
    for name, default, dim in (("item", 0.5, 16), ("user", -3.0, 7)):
        query = query_keys(tables, name, rng)
        result = run("lookup", "--config", path, "--model", "m", "--table", name, "--keys=" + ",".join(map(str, query)))
        got = parse_lines(result.stdout, dim)
        assert got.view(np.uint32).tolist() == expected(tables, name, default, query).view(np.uint32).tolist()


def test_lookup_with_overflow_evictions(deployment):
    _, tables, config = deployment
    path = config(gpucache=False, volatile_db={"type": "hash_map", "num_partitions": 2, "overflow_margin": 500})
    query = [int(k) for k in tables["item"][0]]
    got = parse_lines(run("lookup", "--config", path, "--model", "m", "--table", "0", "--keys=" + ",".join(map(str, query))).stdout, 16)
    want = expected(tables, "item", 0.5, query)
    exact = np.all(got.view(np.uint32) == want.view(np.uint32), axis=1)
    # Evicted keys get the default value; the rest are exact; at most 2 × 500 keys stay.
    assert np.all(got[~exact] == np.float32(0.5))
    assert 0 < exact.sum() <= 1000


def test_keys_file_and_raw_output(deployment):
    tmp, tables, config = deployment
    path = config()
    query = query_keys(tables, "user", np.random.default_rng(3), n=200)
    keys_file = tmp / "keys.bin"
    np.asarray(query, dtype="<i8").tofile(str(keys_file))
    out = tmp / "out.f32"
    run("lookup", "--config", path, "--model", "m", "--table", "user", "--keys-file", str(keys_file), "--output", str(out))
    got = np.fromfile(str(out), dtype="<f4").reshape(-1, 7)
    assert got.view(np.uint32).tolist() == expected(tables, "user", -3.0, query).view(np.uint32).tolist()


def test_lookup_errors_are_clear(deployment):
    tmp, _, config = deployment
    path = config()
    cases = [
        (["--model", "nope", "--table", "0", "--keys", "1"], "nope"),
        (["--model", "m", "--table", "9", "--keys", "1"], "table"),
        (["--model", "m", "--table", "nosuch", "--keys", "1"], "nosuch"),
        (["--model", "m", "--table", "0", "--keys", "1,x"], "'x'"),
        (["--model", "m", "--table", "0"], "--keys"),
    ]
    for args, needle in cases:
        result = run("lookup", "--config", path, *args, check=False)
        assert result.returncode != 0
        assert needle in result.stderr
    bad = tmp / "odd.bin"
    bad.write_bytes(b"\x01\x02\x03")
    result = run("lookup", "--config", path, "--model", "m", "--table", "0", "--keys-file", str(bad), check=False)
    assert result.returncode != 0 and "odd.bin" in result.stderr


def test_validate_reports_every_problem_with_its_path(deployment):
    tmp, _, config = deployment
    good = config()
    assert "valid" in run("validate", good).stdout
    document = json.loads(open(good).read())
    model = document["models"][0]
    model["embedding_vecsize_per_table"] = [16, 7, 3]
    model["model"] = "bad name!"
    document["volatile_db"] = {"type": "hash_mapp"}
    bad = tmp / "bad.json"
    bad.write_text(json.dumps(document))
    result = run("validate", str(bad), check=False)
    assert result.returncode == 1
    assert "models[0].embedding_vecsize_per_table" in result.stderr
    assert "models[0].model" in result.stderr
    assert "volatile_db.type" in result.stderr
    syntax = tmp / "syntax.json"
    syntax.write_text('{\n  "models": [\n    {"model": "m",,}\n  ]\n}')
    result = run("validate", str(syntax), check=False)
    assert result.returncode == 1 and "line 3" in result.stderr


def test_validate_checks_table_sizes(deployment):
    tmp, _, config = deployment
    path = config(embedding_vecsize_per_table=[15, 7])
    result = run("validate", path, check=False)
    assert result.returncode == 1
    assert "emb_vector" in result.stderr


def test_inspect_and_broken_tables(deployment):
    tmp, tables, _ = deployment
    result = run("inspect", str(tmp / "user"))
    assert "rows:       800" in result.stdout and "dimension:  7" in result.stdout
    keys = tables["user"][0]
    assert "%d ... %d" % (keys.min(), keys.max()) in result.stdout
    broken = tmp / "broken"
    write_table(str(broken), np.arange(10), np.zeros((10, 4), np.float32))
    with open(broken / "emb_vector", "r+b") as f:
        f.truncate(10 * 4 * 4 - 4)
    result = run("inspect", str(broken), "--dim", "4", check=False)
    assert result.returncode == 1 and "emb_vector" in result.stderr
    with open(broken / "key", "r+b") as f:
        f.truncate(13)
    result = run("inspect", str(broken), check=False)
    assert result.returncode == 1 and "key" in result.stderr
    result = run("inspect", str(tmp / "missing"), check=False)
    assert result.returncode == 1 and "missing" in result.stderr


def test_convert_numpy(tmp_path):
    vectors = np.random.default_rng(0).standard_normal((300, 5)).astype(np.float32)
    keys = np.arange(300, dtype=np.int64) * 11 - 7
    np.save(tmp_path / "v.npy", vectors)
    np.save(tmp_path / "k.npy", keys)
    run("convert", "--npy", str(tmp_path / "v.npy"), "--keys", str(tmp_path / "k.npy"), "--output", str(tmp_path / "t"))
    assert np.fromfile(str(tmp_path / "t" / "key"), dtype="<i8").tolist() == keys.tolist()
    assert np.fromfile(str(tmp_path / "t" / "emb_vector"), dtype="<f4").reshape(300, 5).tobytes() == vectors.tobytes()
    np.save(tmp_path / "bad.npy", vectors.astype(np.float16))
    result = run("convert", "--npy", str(tmp_path / "bad.npy"), "--output", str(tmp_path / "t2"), check=False)
    assert result.returncode == 1 and "bad.npy" in result.stderr


def test_every_subcommand_has_help():
    top = run("--help").stdout
    for sub in ("demo", "validate", "inspect", "convert", "lookup", "bench"):
        assert sub in top
        assert "USAGE" in run(sub, "--help").stdout


def test_demo_runs_and_checks_itself():
    result = run("demo", "--rows", "5000", "--batches", "20", "--batch-size", "512")
    assert "all bit-exact" in result.stdout


def read_bin_dump(path):
    """The keys and vectors of a .bin dump (header "bin\\0", version, key size, value size; then records)."""
    data = open(path, "rb").read()
    magic, version, key_size, value_size = struct.unpack("<4sIII", data[:16])
    assert (magic, version) == (b"bin\0", 1)
    records = np.frombuffer(data[16:], dtype=np.dtype([("key", "<i%d" % key_size), ("value", "<f4", value_size // 4)]))
    return records["key"].astype(np.int64), records["value"]


def write_bin_dump(path, keys, vectors):
    header = struct.pack("<4sIII", b"bin\0", 1, 8, vectors.shape[1] * 4)
    records = np.zeros(len(keys), dtype=np.dtype([("key", "<i8"), ("value", "<f4", vectors.shape[1])]))
    records["key"], records["value"] = keys, vectors
    open(path, "wb").write(header + records.tobytes())


def test_dump_and_load_dump_of_fused_tables(tmp_path):
    # Three tables of one vector size fuse into one database table; their keys overlap.
    rng = np.random.default_rng(3)
    tables = {}
    for name in ("a", "b", "c"):
        keys = rng.choice(np.arange(-(10**9), 10**9, 13, dtype=np.int64), size=700, replace=False)
        keys[:50] = np.arange(50)  # keys 0..49 are in every table
        tables[name] = (keys, rng.standard_normal((700, 6)).astype(np.float32))
        write_table(str(tmp_path / name), *tables[name])

    def config(name, databases):
        document = {
            "supportlonglong": True,
            "fuse_embedding_table": True,
            **databases,
            "models": [{
                "model": "m",
                "sparse_files": [str(tmp_path / t) for t in tables],
                "embedding_table_names": list(tables),
                "embedding_vecsize_per_table": [6, 6, 6],
                "maxnum_catfeature_query_per_table_per_sample": [2, 2, 2],
                "default_value_for_each_table": [0.0, 0.0, 0.0],
                "deployed_device_list": [0],
                "max_batch_size": 512,
                "hit_rate_threshold": 1.0,
            }],
        }
        path = tmp_path / name
        path.write_text(json.dumps(document))
        return str(path)

    rocks = {"volatile_db": {"type": "disabled"}, "persistent_db": {"type": "rocks_db", "path": str(tmp_path / "db")}}
    hash_map = config("hash.json", {"volatile_db": {"type": "hash_map"}})
    fused = config("rocks.json", rocks)
    serving = config("serve.json", {**rocks, "persistent_db": {**rocks["persistent_db"], "initialize_after_startup": False}})

    # Each table's dump holds its own rows under its own keys, from either database.
    for path in (hash_map, fused):
        for name, (keys, vectors) in tables.items():
            dump = str(tmp_path / ("%s.bin" % name))
            run("dump", "--config", path, "--model", "m", "--table", name, "--output", dump)
            got_keys, got_vectors = read_bin_dump(dump)
            order = np.argsort(got_keys)
            want = np.argsort(keys)
            assert got_keys[order].tolist() == keys[want].tolist()
            assert got_vectors[order].view(np.uint32).tolist() == vectors[want].view(np.uint32).tolist()

    # A dump loaded into table b replaces its rows of those keys; a and c keep theirs.
    new_keys = np.array([0, 1, 2, 10**12], dtype=np.int64)
    new_vectors = np.full((4, 6), 42.5, dtype=np.float32)
    write_bin_dump(str(tmp_path / "new.bin"), new_keys, new_vectors)
    run("load-dump", "--config", fused, "--model", "m", "--table", "b", "--input", str(tmp_path / "new.bin"))
    query = "--keys=" + ",".join(map(str, new_keys.tolist()))
    for name in tables:
        got = parse_lines(run("lookup", "--config", serving, "--model", "m", "--table", name, query).stdout, 6)
        if name == "b":
            want = new_vectors
        else:
            want = np.stack([tables[name][1][i] for i in range(3)] + [np.zeros(6, np.float32)])
        assert got.view(np.uint32).tolist() == want.view(np.uint32).tolist(), name

    # Three fused tables leave 62 bits to a key: 2**61 does not fit.
    write_bin_dump(str(tmp_path / "wide.bin"), np.array([5, 2**61], dtype=np.int64), np.ones((2, 6), np.float32))
    result = run("load-dump", "--config", fused, "--model", "m", "--table", "c", "--input", str(tmp_path / "wide.bin"), check=False)
    assert result.returncode != 0
    assert "key %d of table hps_et.m.c lies outside" % 2**61 in result.stderr
    assert str(tmp_path / "wide.bin") in result.stderr
