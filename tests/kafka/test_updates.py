"""Online updates end to end, across processes: `hps kafka-mock` → `hps publish` → `hps serve` with an
update_source. Every expected answer is computed here from the arrays that were published (bit-exact)."""

import os
import re
import subprocess

import numpy as np
import pytest

from kafka_support import hps_binary, kafka, make_config, publish, serve, wait_until, write_table  # noqa: F401 (fixtures)

DIM = 16


def base_table(tmp_path, rows=5000, seed=0):
    rng = np.random.RandomState(seed)
    keys = np.arange(rows, dtype=np.int64) * 7 + 3
    vectors = rng.uniform(-1, 1, size=(rows, DIM)).astype(np.float32)
    path = os.path.join(str(tmp_path), "table")
    write_table(path, keys, vectors)
    return path, keys, vectors


def updates_for(keys, seed, fraction=0.1, new=1000):
    """New values for `fraction` of `keys` and `new` keys no table holds."""
    rng = np.random.RandomState(seed)
    changed = rng.choice(keys, size=int(len(keys) * fraction), replace=False)
    fresh = np.arange(new, dtype=np.int64) * 7 + 10_000_000
    all_keys = np.concatenate([changed, fresh])
    values = rng.uniform(-2, 2, size=(len(all_keys), DIM)).astype(np.float32)
    return all_keys, values


def expected_after(keys, vectors, upd_keys, upd_values):
    table = {int(k): vectors[i] for i, k in enumerate(keys)}
    for i, k in enumerate(upd_keys):
        table[int(k)] = upd_values[i]
    return table


def answers_match(server, table, keys):
    got = server.lookup(keys, DIM)
    want = np.stack([table[int(k)] for k in keys])
    return np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_updates_reach_databases_and_cached_keys_bit_exactly(kafka, serve, tmp_path):
    path, keys, vectors = base_table(tmp_path)
    config = make_config(tmp_path, "ps.json", kafka.brokers, path, DIM, rocksdb=str(tmp_path / "rocks"),
                         extra_model={"gpucacheper": 1.0})
    server = serve(config)
    # Put a fifth of the keys into the cache (the cache has room for every key: they stay there).
    cached = keys[: len(keys) // 5]
    assert np.array_equal(server.lookup(cached, DIM), vectors[: len(cached)])
    upd_keys, upd_values = updates_for(keys, seed=1)
    assert np.isin(upd_keys, cached).sum() > 50, "some updated keys must be cached"
    out = publish(kafka.brokers, "m", "t0", upd_keys, upd_values, tmp_path)
    assert re.search(r"published %d rows in \d+ messages to hps_et\.m\.t0 \(delivered %d rows" % (len(upd_keys), len(upd_keys)), out), out
    table = expected_after(keys, vectors, upd_keys, upd_values)
    everything = np.concatenate([keys, upd_keys[-1000:]])
    wait_until(lambda: answers_match(server, table, everything), 60, "every update visible\n" + server.output())
    # Cached keys that were updated answer the new value, cached keys that were not keep theirs.
    assert answers_match(server, table, cached)
    assert re.search(r"Kafka update source hps\.local\.\S+: applied \d+ keys", server.output()) or "publish" in server.output()
    server.stop()
    # The persistent database took the updates too: serve from it alone (same table files: not reloaded).
    only_rocks = make_config(tmp_path, "rocks.json", kafka.brokers, path, DIM, volatile="disabled", rocksdb=str(tmp_path / "rocks"),
                             extra_model={"gpucache": False}, update_source={"type": "null"})
    again = serve(only_rocks, name="rocks")
    assert answers_match(again, table, everything)


def test_per_key_order_is_kept(kafka, serve, tmp_path):
    path, keys, vectors = base_table(tmp_path, rows=1000)
    config = make_config(tmp_path, "ps.json", kafka.brokers, path, DIM)
    server = serve(config)
    rng = np.random.RandomState(5)
    hot = keys[:200]
    # Ten rounds, each a separate publish (separate messages); the last round must win for every key.
    for r in range(10):
        values = rng.uniform(-1, 1, size=(len(hot), DIM)).astype(np.float32)
        values[:, 0] = r  # the round number, so a reordering is visible
        publish(kafka.brokers, "m", "t0", hot, values, tmp_path, name="round%d" % r)
    table = expected_after(keys, vectors, hot, values)
    wait_until(lambda: answers_match(server, table, keys), 60, "the last round visible\n" + server.output())


def test_malformed_messages_are_skipped_and_counted(kafka, serve, tmp_path):
    path, keys, vectors = base_table(tmp_path, rows=500)
    config = make_config(tmp_path, "ps.json", kafka.brokers, path, DIM)
    server = serve(config)
    header = np.array([0x52544348, DIM * 4], dtype="<u4").tobytes()
    bad = {
        "junk": b"not an update at all",
        "magic": np.array([0x12345678, DIM * 4], dtype="<u4").tobytes() + b"\0" * (8 + DIM * 4),
        "cut": header + np.int64(3).tobytes() + b"\0" * (DIM * 4 - 1),
        "beacon": header,
    }
    files = []
    for name, payload in bad.items():
        p = os.path.join(str(tmp_path), name + ".msg")
        with open(p, "wb") as f:
            f.write(payload)
        files += ["--raw-message", p]
    out = subprocess.run([hps_binary(), "publish", "--brokers", kafka.brokers, "--model", "m", "--table", "t0", *files],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # Rows of dimension 8 for a table of dimension 16, and rows for a table the config does not have.
    rng = np.random.RandomState(3)
    publish(kafka.brokers, "m", "t0", keys[:5], rng.uniform(size=(5, 8)), tmp_path, name="narrow", extra=("--key-groups", "1"))
    publish(kafka.brokers, "m", "nope", keys[:5], rng.uniform(size=(5, DIM)), tmp_path, name="unknown", extra=("--key-groups", "1"))
    # Then a good update: it is applied, and no row of the bad messages was (keys 3 and keys[:5] keep their values).
    upd_keys, upd_values = keys[100:150], rng.uniform(size=(50, DIM)).astype(np.float32)
    publish(kafka.brokers, "m", "t0", upd_keys, upd_values, tmp_path, name="good")
    table = expected_after(keys, vectors, upd_keys, upd_values)
    wait_until(lambda: answers_match(server, table, keys), 60, "the good update visible\n" + server.output())
    want_t0 = "hps_et.m.t0: 4 message(s) skipped (bad header: 2, value size does not match the table: 1, truncated record: 1)"
    want_nope = "hps_et.m.nope: 1 message(s) skipped (unknown table: 1)"
    wait_until(lambda: want_t0 in server.output() and want_nope in server.output(), 20, "skip summaries\n" + server.output())
    log = server.output()
    # The first skip of each topic is logged once, naming the reason; the rest only counted.
    assert len(re.findall(r"Kafka topic hps_et\.m\.t0: skipping a message", log)) == 1, log
    assert len(re.findall(r"Kafka topic hps_et\.m\.nope: skipping a message \(unknown table", log)) == 1, log
    assert server.proc.poll() is None
