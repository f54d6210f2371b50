"""hps serve with fuse_embedding_table: one multi-table lookup per request answers every table of a fused group
in one pass, bit-exact against the table files (keys shared across the fused tables)."""

import os
import sys

import numpy as np
import tritonclient.http as tritonclient_http

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "support"))
from servers import write_config, write_table  # noqa: E402
from test_serve import make_model, serve, table_query, triton_infer  # noqa: E402, F401 (fixture)


def test_fused_tables_answer_bit_exact(tmp_path, serve):
    d = str(tmp_path)
    entry, arrays = make_model(d, "fused", [8, 4, 8, 8], seed=3)
    entry["default_value_for_each_table"] = [0.5, 1.5, 0.5, 0.5]
    # Every table holds the same keys: the fused group must keep them apart.
    for t, (keys, vectors) in enumerate(arrays):
        shared = keys - t
        write_table(entry["sparse_files"][t], shared, vectors)
        arrays[t] = (shared, vectors)
    config = write_config(os.path.join(d, "ps.json"), {"supportlonglong": True, "fuse_embedding_table": True, "models": [entry]})
    server = serve(config)
    client = tritonclient_http.InferenceServerClient(server.url)
    rng = np.random.RandomState(4)
    for _ in range(5):
        keys, counts, want = [], [], []
        for t, (table_keys, vectors) in enumerate(arrays):
            n = rng.randint(0, 40)
            q, expect = table_query(table_keys, vectors, entry["default_value_for_each_table"][t], rng, n, len(table_keys) + 20)
            keys.append(q)
            counts.append(n)
            want.append(expect)
        result = triton_infer(client, "fused", np.concatenate(keys), np.array(counts, dtype=np.int32))
        got = result.as_numpy("OUTPUT0").reshape(-1)
        assert np.array_equal(got.view(np.uint32), np.concatenate(want).view(np.uint32))
