"""hps serve with fuse_embedding_table: one multi-table lookup per request answers every table of a fused group
in one pass, bit-exact against the table files (keys shared across the fused tables)."""

import json
import os

import numpy as np
import tritonclient.http as tritonclient_http

from test_serve import make_model, serve, triton_infer  # noqa: F401 (fixture)


def test_fused_tables_answer_bit_exact(tmp_path, serve):
    d = str(tmp_path)
    entry, arrays = make_model(d, "fused", [8, 4, 8, 8], seed=3)
    entry["default_value_for_each_table"] = [0.5, 1.5, 0.5, 0.5]
    # Every table holds the same keys: the fused group must keep them apart.
    for t, (keys, vectors) in enumerate(arrays):
        shared = keys - t
        shared.astype("<i8").tofile(os.path.join(entry["sparse_files"][t], "key"))
        arrays[t] = (shared, vectors)
    config = os.path.join(d, "ps.json")
    with open(config, "w") as f:
        json.dump({"supportlonglong": True, "fuse_embedding_table": True, "models": [entry]}, f)
    server = serve(config)
    client = tritonclient_http.InferenceServerClient(server.url)
    rng = np.random.RandomState(4)
    for _ in range(5):
        keys, counts, want = [], [], []
        for t, (table_keys, vectors) in enumerate(arrays):
            n = rng.randint(0, 40)
            chosen = rng.randint(0, len(table_keys) + 20, size=n)
            q = np.where(chosen < len(table_keys), table_keys[np.minimum(chosen, len(table_keys) - 1)], 10**12 + chosen)
            index = {int(k): i for i, k in enumerate(table_keys)}
            expect = np.full((n, vectors.shape[1]), entry["default_value_for_each_table"][t], dtype=np.float32)
            for i, k in enumerate(q):
                if int(k) in index:
                    expect[i] = vectors[index[int(k)]]
            keys.append(q.astype(np.int64))
            counts.append(n)
            want.append(expect.reshape(-1))
        result = triton_infer(client, "fused", np.concatenate(keys), np.array(counts, dtype=np.int32))
        got = result.as_numpy("OUTPUT0").reshape(-1)
        assert np.array_equal(got.view(np.uint32), np.concatenate(want).view(np.uint32))
