"""Inputs that used to crash `hps` or make it answer wrongly (issue: reliability).

Each test runs the CLI as a subprocess and asserts a normal exit (0 or 1, never a signal) with a message
that names the setting, file, key or value at fault.
"""

import json
import os
import resource
import struct

import numpy as np
import pytest

from test_cli import hps_binary, run, write_table
import subprocess


def write_config(path, tables, volatile=None, persistent=None, supportlonglong=True, **model_overrides):
    """A one-model config over `tables` (a list of (directory, dim))."""
    model = {
        "model": "m",
        "sparse_files": [t for t, _ in tables],
        "embedding_vecsize_per_table": [d for _, d in tables],
        "maxnum_catfeature_query_per_table_per_sample": [4] * len(tables),
        "default_value_for_each_table": [0.25] * len(tables),
        "deployed_device_list": [0],
        "max_batch_size": 64,
        "hit_rate_threshold": 1.0,
    }
    model.update(model_overrides)
    document = {"supportlonglong": supportlonglong, "models": [model]}
    if volatile is not None:
        document["volatile_db"] = volatile
    if persistent is not None:
        document["persistent_db"] = persistent
    with open(path, "w") as f:
        # json.dumps writes 1e39 as 1e+39 and refuses inf; the raw text keeps what the user wrote.
        f.write(json.dumps(document).replace('"RAW:', "").replace(':RAW"', ""))
    return str(path)


@pytest.fixture
def small_table(tmp_path):
    path = str(tmp_path / "t")
    keys = np.arange(70, dtype=np.int64) * 3
    vectors = np.random.default_rng(3).standard_normal((70, 4)).astype(np.float32)
    write_table(path, keys, vectors)
    return path, keys, vectors


def assert_clean_failure(result, *fragments):
    """Exit status 1 (an error, not a crash) and every fragment in stderr."""
    assert result.returncode == 1, "rc %d (signal?)\nstderr: %s" % (result.returncode, result.stderr[-3000:])
    for fragment in fragments:
        assert fragment in result.stderr, "%r not in:\n%s" % (fragment, result.stderr[-3000:])


def validate_and_lookup(config, *fragments):
    """`hps validate` and `hps lookup` both refuse the config with the same message."""
    assert_clean_failure(run("validate", config, check=False), *fragments)
    assert_clean_failure(run("lookup", "--config", config, "--model", "m", "--table", "0", "--keys", "3", check=False), *fragments)


# MARK: Size arithmetic and up-front allocations


@pytest.mark.parametrize(
    "overrides,path,message",
    [
        ({"max_batch_size": 2**62}, "models[0].max_batch_size", "more than the limit of 268435456 (2^28)"),
        ({"maxnum_catfeature_query_per_table_per_sample": [2**62]}, "models[0].maxnum_catfeature_query_per_table_per_sample[0]", "268435456"),
        (
            {"max_batch_size": 10**8, "maxnum_catfeature_query_per_table_per_sample": [100]},
            "models[0].maxnum_catfeature_query_per_table_per_sample[0]",
            "max_batch_size 100000000 × 100 = 10000000000 keys per lookup",
        ),
        ({"embedding_vecsize_per_table": [2**40]}, "models[0].embedding_vecsize_per_table[0]", "limit of 1048576 (2^20)"),
    ],
)
def test_oversized_lookups_are_errors(tmp_path, small_table, overrides, path, message):
    config = write_config(tmp_path / "ps.json", [(small_table[0], 4)], **overrides)
    result = run("validate", "--skip-files", config, check=False)
    assert_clean_failure(result, path, message)
    validate_and_lookup(config, path)


def test_two_tables_whose_buffers_exceed_the_limit(tmp_path, small_table):
    config = write_config(
        tmp_path / "ps.json",
        [(small_table[0], 4), (small_table[0], 4)],
        max_batch_size=10**8,
        maxnum_catfeature_query_per_table_per_sample=[100, 100],
    )
    validate_and_lookup(
        config,
        "models[0].maxnum_catfeature_query_per_table_per_sample[0]",
        "models[0].maxnum_catfeature_query_per_table_per_sample[1]",
    )


@pytest.mark.parametrize("partitions", [10**6, 10**8, 2**40])
def test_partition_counts_are_bounded(tmp_path, small_table, partitions):
    config = write_config(tmp_path / "ps.json", [(small_table[0], 4)], volatile={"type": "hash_map", "num_partitions": partitions})
    validate_and_lookup(config, "volatile_db.num_partitions", "is %d, more than the limit of 4096 partitions" % partitions)


def test_limits_themselves_are_accepted(tmp_path, small_table):
    path, keys, vectors = small_table
    config = write_config(
        tmp_path / "ps.json",
        [(path, 4)],
        max_batch_size=2**14,
        maxnum_catfeature_query_per_table_per_sample=[2**14],
        volatile={"type": "hash_map", "num_partitions": 4096},
    )
    assert "valid" in run("validate", config).stdout


# MARK: Tables


def test_inspect_streams_a_huge_key_file(tmp_path):
    """A 2 GiB key file (sparse, so it costs no disk) is inspected under a 1 GiB address-space limit: the key
    file is streamed, never read whole."""
    table = tmp_path / "huge"
    table.mkdir()
    rows = 2**28
    with open(table / "key", "wb") as f:
        f.truncate(rows * 8)  # every key 0
        f.seek(rows * 8 - 8)
        f.write(struct.pack("<q", 7))
    with open(table / "emb_vector", "wb") as f:
        f.truncate(rows * 4)  # dimension 1

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    result = subprocess.run(
        [hps_binary(), "inspect", str(table)], capture_output=True, text=True, timeout=600, preexec_fn=limit,
        env=dict(os.environ, HPS_LOG_LEVEL="warning"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rows:       %d" % rows in result.stdout
    assert "key range:  0 ... 7" in result.stdout
    assert "duplicates: %d" % (rows - 2) in result.stdout


@pytest.mark.parametrize("bad_key,row", [(2**32 + 5, 2), (-1, 2)])
def test_32_bit_keys_that_do_not_fit_are_refused(tmp_path, bad_key, row):
    path = str(tmp_path / "t")
    write_table(path, [5, 6, bad_key, 2**33], np.ones((4, 2), np.float32))
    config = write_config(tmp_path / "ps.json", [(path, 2)], supportlonglong=False, volatile={"type": "hash_map"})
    fragments = (os.path.join(path, "key"), "row %d holds key %d" % (row, bad_key), "supportlonglong")
    assert_clean_failure(run("validate", config, check=False), "models[0].sparse_files[0]", *fragments)
    assert_clean_failure(run("lookup", "--config", config, "--model", "m", "--table", "0", "--keys", "5", check=False), *fragments)


@pytest.mark.parametrize("text", ["1e39", "-1e39", "1e999"])
def test_default_values_beyond_float32_are_errors(tmp_path, small_table, text):
    config = write_config(tmp_path / "ps.json", [(small_table[0], 4)], default_value_for_each_table=["RAW:%s:RAW" % text])
    assert text in open(config).read()
    validate_and_lookup(config, "models[0].default_value_for_each_table[0]")


def test_duplicate_keys_warn_naming_file_and_key(tmp_path):
    path = str(tmp_path / "t")
    write_table(path, [10, 11, 12, 11, 13], np.arange(10, dtype=np.float32).reshape(5, 2))
    config = write_config(tmp_path / "ps.json", [(path, 2)], volatile={"type": "hash_map"})
    result = run("validate", config)
    assert "%s holds 1 duplicate key(s), e.g. key 11 again at row 3" % os.path.join(path, "key") in result.stderr
    result = run("lookup", "--config", config, "--model", "m", "--table", "0", "--keys", "11")
    assert "duplicate key(s), e.g. key 11" in result.stderr
    assert result.stdout.split() == ["6.0", "7.0"]  # the later row is served


def test_volatile_capacity_below_the_table_warns(tmp_path, small_table):
    config = write_config(
        tmp_path / "ps.json", [(small_table[0], 4)], volatile={"type": "hash_map", "num_partitions": 2, "overflow_margin": 10}
    )
    result = run("validate", config)
    assert "models[0].sparse_files[0]: the table has 70 rows but the volatile database holds at most 20" in result.stderr
    assert "volatile_db.overflow_margin 10" in result.stderr


# MARK: Settings that must not be ignored


def test_multi_process_hash_map_fails_validation(tmp_path, small_table):
    config = write_config(tmp_path / "ps.json", [(small_table[0], 4)], volatile={"type": "multi_process_hash_map"})
    validate_and_lookup(config, "volatile_db.type", "multi_process_hash_map is not available")


def test_initial_cache_rate(tmp_path, small_table):
    path, keys, vectors = small_table
    alone = write_config(tmp_path / "alone.json", [(path, 4)], volatile={"type": "hash_map", "initial_cache_rate": 0.5})
    validate_and_lookup(alone, "volatile_db.initial_cache_rate", "persistent_db is disabled")
    both = write_config(
        tmp_path / "both.json",
        [(path, 4)],
        volatile={"type": "hash_map", "initial_cache_rate": 0.5},
        persistent={"type": "rocks_db", "path": str(tmp_path / "rocks"), "num_threads": 2},
        gpucache=False,
    )
    env = dict(os.environ, HPS_LOG_LEVEL="info")
    result = subprocess.run(
        [hps_binary(), "lookup", "--config", both, "--model", "m", "--table", "0", "--keys", ",".join(str(k) for k in keys)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cached 35 / 70 embeddings in hash_map" in result.stderr
    got = np.array([[np.float32(x) for x in line.split()] for line in result.stdout.splitlines()], np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), vectors.view(np.uint32))


# MARK: Text output and conversion


def parse_float(token):
    if token.startswith("nan:0x"):
        return np.array([int(token[6:], 16)], np.uint32).view(np.float32)[0]
    return np.float32(token)


def test_nan_bit_patterns_round_trip_through_text_output(tmp_path):
    bits = np.array([0x7FC00000, 0xFFC00000, 0x7FC01234, 0x7F800001, 0xFFFFFFFF, 0x3F800000, 0x00000001, 0x80000000], np.uint32)
    vectors = bits.view(np.float32).reshape(2, 4)
    path = str(tmp_path / "t")
    write_table(path, [1, 2], vectors)
    config = write_config(tmp_path / "ps.json", [(path, 4)], volatile={"type": "hash_map"})
    result = run("lookup", "--config", config, "--model", "m", "--table", "0", "--keys", "1,2")
    lines = result.stdout.splitlines()
    assert lines[0].split()[0] == "nan"  # the canonical quiet NaN stays plain
    assert "nan:0x7fc01234" in lines[0].split()
    got = np.array([[parse_float(t) for t in line.split()] for line in lines], np.float32)
    assert got.view(np.uint32).tolist() == bits.reshape(2, 4).tolist()


def test_convert_refuses_values_that_do_not_fit(tmp_path):
    vectors = np.ones((3, 2), np.float64)
    vectors[1, 1] = 1e300
    np.save(tmp_path / "v.npy", vectors)
    result = run("convert", "--npy", str(tmp_path / "v.npy"), "--output", str(tmp_path / "out"), check=False)
    assert_clean_failure(result, "v.npy", "row 1, column 1", "1e+300", "does not fit float32")
    assert not os.path.exists(tmp_path / "out" / "key")

    np.save(tmp_path / "v32.npy", np.ones((3, 2), np.float64))
    np.save(tmp_path / "k.npy", np.array([1, 2**63 + 5, 3], np.uint64))
    result = run("convert", "--npy", str(tmp_path / "v32.npy"), "--keys", str(tmp_path / "k.npy"), "--output", str(tmp_path / "out"), check=False)
    assert_clean_failure(result, "k.npy", "element 1", str(2**63 + 5), "does not fit an int64 key")

    np.save(tmp_path / "k.npy", np.array([1, 2**63 - 1, 3], np.uint64))
    run("convert", "--npy", str(tmp_path / "v32.npy"), "--keys", str(tmp_path / "k.npy"), "--output", str(tmp_path / "out"))
    assert np.fromfile(tmp_path / "out" / "key", "<i8").tolist() == [1, 2**63 - 1, 3]


# MARK: Arguments


def test_keys_file_errors_are_clear(tmp_path, small_table):
    config = write_config(tmp_path / "ps.json", [(small_table[0], 4)])
    for path, reason in ((str(tmp_path / "missing.bin"), "No such file or directory"), (str(tmp_path), "Is a directory")):
        result = run("lookup", "--config", config, "--model", "m", "--table", "0", "--keys-file", path, check=False)
        assert_clean_failure(result, "--keys-file %s" % path, "cannot read the keys file", reason)
        assert "NSCocoaErrorDomain" not in result.stderr


def test_table_named_like_an_index(tmp_path):
    one, zero = str(tmp_path / "one"), str(tmp_path / "zero")
    write_table(one, [1], np.full((1, 2), 1.0, np.float32))
    write_table(zero, [1], np.full((1, 2), 0.0, np.float32))
    config = write_config(tmp_path / "ps.json", [(one, 2), (zero, 2)], embedding_table_names=["1", "0"])
    by_index = run("lookup", "--config", config, "--model", "m", "--table", "0", "--keys", "1")
    assert by_index.stdout.split() == ["1.0", "1.0"]  # the index wins
    assert "use --table-name 0" in by_index.stderr
    by_name = run("lookup", "--config", config, "--model", "m", "--table-name", "0", "--keys", "1")
    assert by_name.stdout.split() == ["0.0", "0.0"]
    neither = run("lookup", "--config", config, "--model", "m", "--keys", "1", check=False)
    assert neither.returncode == 64, neither.stderr  # a usage error
    assert "exactly one of --table or --table-name" in neither.stderr


def test_corrupted_sst_dump_errors_name_the_users_file(tmp_path, small_table):
    path, keys, vectors = small_table
    config = write_config(
        tmp_path / "ps.json", [(path, 4)], persistent={"type": "rocks_db", "path": str(tmp_path / "rocks"), "num_threads": 2}
    )
    dump = str(tmp_path / "d.sst")
    run("dump", "--config", config, "--model", "m", "--table", "0", "--output", dump)
    data = bytearray(open(dump, "rb").read())
    for offset in range(40, min(len(data) // 2, 400)):  # inside the first data block
        data[offset] ^= 0x5A
    open(dump, "wb").write(bytes(data))
    result = run("load-dump", "--config", config, "--model", "m", "--table", "0", "--input", dump, check=False)
    assert_clean_failure(result, dump)
    assert "hps-sst-" not in result.stderr, result.stderr
