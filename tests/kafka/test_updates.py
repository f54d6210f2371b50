"""Online updates end to end, across processes: `hps kafka-mock` → `hps publish` → `hps serve` with an
update_source. Every expected answer is computed here from the arrays that were published (bit-exact)."""

import os
import re
import subprocess

import numpy as np
import pytest

from conftest import hps_binary, make_config, publish, wait_until, write_table

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
    again = serve(only_rocks, "rocks")
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
