"""SOK-trained DLRM to HPS inference (NVIDIA's sok_to_hps_dlrm_demo notebook, on a CPU and on MovieLens-100K).

1. Train a small DLRM: eight sparse features over three embedding tables (users, items, genres; the genres
   feature is multi-hot and pooled with `mean`), a bottom MLP over three dense features, a pairwise dot
   interaction and a top MLP. The tables are TensorFlow variables (SOK needs NVIDIA GPUs).
2. Dump each table exactly as SOK's `sok.Saver.dump_to_file` does: one directory per table holding
   `EmbeddingVariable_keys.file` (raw int64 keys) and `EmbeddingVariable_values.file` (raw float32 rows),
   in hash-table order, not sorted. Save the dense part (everything after the embeddings).
3. Write ps.json with the SOK dump directories as `sparse_files`, unchanged (no renaming, no conversion).
4. Build the inference model from hps.LookupLayer (users, items), hps.SparseLookupLayer (genres) and the
   saved dense part; save it as a SavedModel.
5. Deploy it in a fresh Python process (hps.Init, tf.saved_model.load) and predict the test set; the
   predictions must equal the trained model's (max |Δ| ≤ 1e-6) and, on MovieLens, the test AUC must reach
   --min-auc.

Data: MovieLens-100K as shipped inside the `recbole` wheel (recbole/dataset_example/ml-100k, MIT licence;
`pip install --no-deps recbole==1.2.1`: only its data files are read, RecBole itself is never imported).
Without it (or with --data synthetic) the example uses synthetic data drawn with a fixed seed.

    python examples/sok_dlrm/run.py [--workdir DIR] [--data auto|movielens|synthetic] [--epochs 4]
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

import hierarchical_parameter_server as hps

keras = tf.keras

MODEL_NAME = "dlrm"
TABLES = ("users", "items", "genres")  # table ids 0, 1, 2
SOK_VARIABLE = "EmbeddingVariable"  # SOK's default variable name: <name>_keys.file / <name>_values.file
USER_SLOTS = ("user_id", "age", "gender", "occupation", "zip_prefix")
ITEM_SLOTS = ("item_id", "release_year")
DENSE_FEATURES = ("age", "timestamp", "release_year")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default=None, help="where the dumps, models and config go (default: a temp dir)")
    p.add_argument("--data", choices=("auto", "movielens", "synthetic"), default="auto",
                   help="auto: MovieLens-100K when the recbole package is installed, else synthetic")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=1024, help="training batch and HPS max_batch_size")
    p.add_argument("--embed-vec-size", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=0.005)
    p.add_argument("--min-auc", type=float, default=0.75, help="test AUC the MovieLens run must reach")
    p.add_argument("--serve", default=None, help=argparse.SUPPRESS)  # internal: deploy step in a fresh process
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------------------- data

def movielens_dir():
    """recbole/dataset_example/ml-100k of an installed recbole wheel, found without importing recbole."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "dataset_example", "ml-100k")
    return path if os.path.isfile(os.path.join(path, "ml-100k.inter")) else None


def read_atomic(path):
    """A RecBole atomic file: tab-separated, header `name:type`; returns (names, rows of strings)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline().rstrip("\n").split("\t")
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    return [h.split(":")[0] for h in header], rows


class Vocabulary:
    """Feature values → dense ids per slot; a table's keys are the slot's ids plus the slot's offset."""

    def __init__(self):
        self.slots = {}

    def ids(self, slot, values):
        table = self.slots.setdefault(slot, {})
        return np.array([table.setdefault(v, len(table)) for v in values], dtype=np.int64)

    def size(self, slot):
        return len(self.slots[slot])


def load_movielens(path):
    """Samples of MovieLens-100K: label = rating ≥ 4; returns a dict of arrays (see `make_samples`)."""
    _, users = read_atomic(os.path.join(path, "ml-100k.user"))
    _, items = read_atomic(os.path.join(path, "ml-100k.item"))
    _, inter = read_atomic(os.path.join(path, "ml-100k.inter"))
    user_row = {u[0]: u for u in users}
    item_row = {i[0]: i for i in items}
    voc = Vocabulary()
    user_ids = [r[0] for r in inter]
    item_ids = [r[1] for r in inter]
    u = [user_row[x] for x in user_ids]
    it = [item_row[x] for x in item_ids]
    ages = np.array([float(r[1]) for r in u], dtype=np.float32)
    years = np.array([float(r[2]) if r[2].strip().isdigit() else 1990.0 for r in it], dtype=np.float32)
    stamps = np.array([float(r[3]) for r in inter], dtype=np.float64)
    user_cols = [
        voc.ids("user_id", user_ids),
        voc.ids("age", [str(int(a) // 10) for a in ages]),
        voc.ids("gender", [r[2] for r in u]),
        voc.ids("occupation", [r[3] for r in u]),
        voc.ids("zip_prefix", [r[4][:2] for r in u]),
    ]
    item_cols = [voc.ids("item_id", item_ids), voc.ids("release_year", [r[2] or "unknown" for r in it])]
    genre_lists = [(r[3].split() if len(r) > 3 and r[3].strip() else ["unknown"]) for r in it]
    genre_ids = [voc.ids("genres", g) for g in genre_lists]
    dense = np.stack([
        (ages - ages.mean()) / ages.std(),
        ((stamps - stamps.mean()) / stamps.std()).astype(np.float32),
        (years - years.mean()) / years.std(),
    ], axis=1).astype(np.float32)
    labels = np.array([float(r[2]) >= 4.0 for r in inter], dtype=np.float32)
    return make_samples(voc, user_cols, item_cols, genre_ids, dense, labels)


def load_synthetic(n=60000, seed=0):
    """Fixed-seed synthetic samples whose labels follow a hidden score of the keys, so AUC is meaningful."""
    rng = np.random.RandomState(seed)
    voc = Vocabulary()
    sizes = {"user_id": 900, "age": 7, "gender": 2, "occupation": 21, "zip_prefix": 100, "item_id": 1600,
             "release_year": 70, "genres": 19}
    cols = {s: voc.ids(s, [str(v) for v in rng.randint(0, sizes[s], size=n)]) for s in sizes if s != "genres"}
    genre_ids = [voc.ids("genres", [str(g) for g in rng.choice(19, size=rng.randint(1, 4), replace=False)])
                 for _ in range(n)]
    dense = rng.normal(size=(n, len(DENSE_FEATURES))).astype(np.float32)
    hidden = {s: rng.normal(size=voc.size(s)) for s in sizes}
    score = sum(hidden[s][cols[s]] for s in cols) + np.array([hidden["genres"][g].mean() for g in genre_ids])
    score += dense @ rng.normal(size=len(DENSE_FEATURES))
    labels = (rng.uniform(size=n) < 1 / (1 + np.exp(-score))).astype(np.float32)
    return make_samples(voc, [cols[s] for s in USER_SLOTS], [cols[s] for s in ITEM_SLOTS], genre_ids, dense, labels)


def make_samples(voc, user_cols, item_cols, genre_ids, dense, labels):
    """Turns per-slot ids into table keys: each slot of a table gets its own key range (slot offset)."""
    def keys(slots, cols):
        offset, out = 0, []
        for slot, col in zip(slots, cols):
            out.append(col + offset)
            offset += voc.size(slot)
        return np.stack(out, axis=1), offset

    user_keys, user_rows = keys(USER_SLOTS, user_cols)
    item_keys, item_rows = keys(ITEM_SLOTS, item_cols)
    max_genres = max(len(g) for g in genre_ids)
    return {
        "user_keys": user_keys, "item_keys": item_keys, "genre_lists": genre_ids, "dense": dense, "labels": labels,
        "rows": (user_rows, item_rows, voc.size("genres")), "max_genres": max_genres,
    }


def split(samples, seed=0, test_fraction=0.2):
    order = np.random.RandomState(seed).permutation(len(samples["labels"]))
    cut = int(len(order) * (1 - test_fraction))

    def take(idx):
        out = {k: samples[k][idx] for k in ("user_keys", "item_keys", "dense", "labels")}
        out["genre_lists"] = [samples["genre_lists"][i] for i in idx]
        return out

    return take(order[:cut]), take(order[cut:])


def genre_sparse(genre_lists, max_genres):
    """The multi-hot genres as a rank-2 SparseTensor [batch, max_genres], canonical row-major order."""
    indices = [(r, j) for r, g in enumerate(genre_lists) for j in range(len(g))]
    values = np.concatenate(genre_lists).astype(np.int64)
    return tf.SparseTensor(np.array(indices, dtype=np.int64), values, [len(genre_lists), max_genres])


def batches(data, batch_size, max_genres, shuffle_seed=None):
    n = len(data["labels"])
    order = np.arange(n) if shuffle_seed is None else np.random.RandomState(shuffle_seed).permutation(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield (tf.constant(data["user_keys"][idx]), tf.constant(data["item_keys"][idx]),
               genre_sparse([data["genre_lists"][i] for i in idx], max_genres),
               tf.constant(data["dense"][idx]), tf.constant(data["labels"][idx][:, None]))


# ---------------------------------------------------------------------------------------------------- model

@keras.utils.register_keras_serializable(package="sok_dlrm")
class DotInteraction(keras.layers.Layer):
    """DLRM's interaction: pairwise dot products of the bottom MLP output and every embedding (no self
    products), concatenated with the bottom MLP output."""

    def call(self, inputs):
        bottom, embeddings = inputs
        features = tf.concat([bottom[:, None, :], embeddings], axis=1)  # [batch, 1 + slots, dim]
        dots = tf.matmul(features, features, transpose_b=True)  # [batch, F, F]
        f = features.shape[1]
        pairs = [i * f + j for i in range(f) for j in range(i + 1, f)]
        flat = tf.reshape(dots, [-1, f * f])
        return tf.concat([bottom, tf.gather(flat, pairs, axis=1)], axis=1)


def dense_part(slots, dim):
    """The dense part: (embeddings [batch, slots, dim], dense features) → click probability."""
    embeddings = keras.Input(shape=(slots, dim), dtype="float32", name="embeddings")
    dense = keras.Input(shape=(len(DENSE_FEATURES),), dtype="float32", name="dense")
    x = keras.layers.Dense(64, activation="relu", name="bottom_1")(dense)
    bottom = keras.layers.Dense(dim, activation="relu", name="bottom_2")(x)
    x = DotInteraction(name="interaction")([bottom, embeddings])
    x = keras.layers.Dense(64, activation="relu", name="top_1")(x)
    x = keras.layers.Dense(32, activation="relu", name="top_2")(x)
    prob = keras.layers.Dense(1, activation="sigmoid", name="top_3")(x)
    return keras.Model([embeddings, dense], prob, name="dlrm_dense")


class DLRM(tf.Module):
    """Three embedding tables (TF variables standing in for SOK's) + the dense part."""

    def __init__(self, rows, dim, seed=0):
        super().__init__()
        init = keras.initializers.RandomUniform(-0.05, 0.05, seed=seed)
        self.tables = [tf.Variable(init((r, dim)), name="%s_table" % n) for r, n in zip(rows, TABLES)]
        self.dense = dense_part(len(USER_SLOTS) + len(ITEM_SLOTS) + 1, dim)

    def embed(self, user_keys, item_keys, genres):
        users = tf.nn.embedding_lookup(self.tables[0], user_keys)
        items = tf.nn.embedding_lookup(self.tables[1], item_keys)
        pooled = tf.nn.embedding_lookup_sparse(self.tables[2], genres, None, combiner="mean")
        return tf.concat([users, items, pooled[:, None, :]], axis=1)

    def __call__(self, user_keys, item_keys, genres, dense):
        return self.dense([self.embed(user_keys, item_keys, genres), dense])

    @property
    def trainable_variables(self):
        return list(self.tables) + list(self.dense.trainable_variables)


def auc(labels, scores):
    """Area under the ROC curve (rank statistic, ties averaged)."""
    labels = np.asarray(labels).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1
        i = j + 1
    pos = labels > 0.5
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def train(args, data, rows, max_genres):
    model = DLRM(rows, args.embed_vec_size)
    optimizer = keras.optimizers.Adam(learning_rate=args.learning_rate)
    loss_fn = keras.losses.BinaryCrossentropy()

    @tf.function(reduce_retracing=True)
    def step(user_keys, item_keys, genres, dense, labels):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(user_keys, item_keys, genres, dense))
        grads = tape.gradient(loss, model.trainable_variables)
        grads = [tf.convert_to_tensor(g) for g in grads]  # IndexedSlices of the tables → dense (Adam on CPU)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    for epoch in range(args.epochs):
        losses = [float(step(*b)) for b in batches(data, args.batch_size, max_genres, shuffle_seed=epoch)]
        print("epoch %d: mean loss %.4f over %d steps" % (epoch, np.mean(losses), len(losses)))
    return model


def predict(fn, data, batch_size, max_genres):
    return np.concatenate([fn(*b[:4]).numpy().ravel() for b in batches(data, batch_size, max_genres)])


# ------------------------------------------------------------------------------------------- dissect/export

def dump_like_sok(table, directory, seed):
    """Writes `directory/EmbeddingVariable_{keys,values}.file` as sok.Saver.dump_to_file does: raw int64 keys
    and raw float32 vectors, one row per key, in the order of the GPU hash table (here: a shuffle)."""
    os.makedirs(directory, exist_ok=True)
    vectors = table.numpy()
    keys = np.random.RandomState(seed).permutation(vectors.shape[0]).astype(np.int64)
    keys.astype("<i8").tofile(os.path.join(directory, SOK_VARIABLE + "_keys.file"))
    vectors[keys].astype("<f4").tofile(os.path.join(directory, SOK_VARIABLE + "_values.file"))
    return directory


def dissect(args, model, workdir):
    """Dumps the tables as SOK would and saves the dense part; returns (dump dirs, dense model path)."""
    dumps = []
    for t, name in enumerate(TABLES):
        d = dump_like_sok(model.tables[t], os.path.join(workdir, "dlrm_sparse_%s.model" % name), seed=100 + t)
        keys, vectors = hps.read_sok_dump(d, emb_vec_size=args.embed_vec_size)
        assert np.array_equal(vectors, model.tables[t].numpy()[keys]), "SOK dump does not read back"
        print("SOK dump %s: %s (%d B), %s (%d B)" % (
            os.path.basename(d), SOK_VARIABLE + "_keys.file", os.path.getsize(os.path.join(d, SOK_VARIABLE + "_keys.file")),
            SOK_VARIABLE + "_values.file", os.path.getsize(os.path.join(d, SOK_VARIABLE + "_values.file"))))
        dumps.append(d)
    dense_path = os.path.join(workdir, "dlrm_dense.keras")
    model.dense.save(dense_path)
    return dumps, dense_path


def write_config(args, dumps, max_genres, workdir):
    config = {
        "supportlonglong": True,
        "models": [{
            "model": MODEL_NAME,
            "sparse_files": dumps,  # the SOK dump directories, read unchanged
            "num_of_worker_buffer_in_pool": 3,
            "embedding_table_names": ["sparse_embedding_%s" % n for n in TABLES],
            "embedding_vecsize_per_table": [args.embed_vec_size] * len(TABLES),
            "maxnum_catfeature_query_per_table_per_sample": [len(USER_SLOTS), len(ITEM_SLOTS), max_genres],
            "default_value_for_each_table": [0.0] * len(TABLES),
            "deployed_device_list": [0],
            "max_batch_size": args.batch_size,
            "cache_refresh_percentage_per_iteration": 0.2,
            "hit_rate_threshold": 1.0,
            "gpucacheper": 1.0,
            "gpucache": True,
        }],
    }
    path = os.path.join(workdir, "dlrm.json")
    with open(path, "w") as f:
        json.dump(config, f, indent=2)
    return path


class Inference(tf.Module):
    """hps.LookupLayer (users, items) + hps.SparseLookupLayer (genres, mean) + the trained dense part. The
    layers carry the config path, so the SavedModel also initializes HPS by itself (lazy init)."""

    def __init__(self, dim, dense, config_path, batch_size):
        super().__init__()
        common = dict(model_name=MODEL_NAME, emb_vec_size=dim, emb_vec_dtype=tf.float32, ps_config_file=config_path,
                      global_batch_size=batch_size)
        self.users = hps.LookupLayer(table_id=0, name="users", **common)
        self.items = hps.LookupLayer(table_id=1, name="items", **common)
        self.genres = hps.SparseLookupLayer(table_id=2, name="genres", **common)
        self.dense = dense

    @tf.function(input_signature=[
        tf.TensorSpec([None, len(USER_SLOTS)], tf.int64, name="user_keys"),
        tf.TensorSpec([None, len(ITEM_SLOTS)], tf.int64, name="item_keys"),
        tf.SparseTensorSpec([None, None], tf.int64),
        tf.TensorSpec([None, len(DENSE_FEATURES)], tf.float32, name="dense"),
    ])
    def serve(self, user_keys, item_keys, genres, dense):
        pooled = self.genres(genres, None, combiner="mean")
        embeddings = tf.concat([self.users(user_keys), self.items(item_keys), pooled[:, None, :]], axis=1)
        return self.dense([embeddings, dense])


def build_inference_model(args, dense_path, config_path, workdir):
    module = Inference(args.embed_vec_size, keras.models.load_model(dense_path), config_path, args.batch_size)
    path = os.path.join(workdir, "dlrm_tf_saved_model")
    tf.saved_model.save(module, path)
    return path


def serve(workdir):
    """The deploy step, run in a fresh process: hps.Init, load the SavedModel, predict the saved test set."""
    with open(os.path.join(workdir, "deploy.json")) as f:
        job = json.load(f)
    assert hps.Init(global_batch_size=job["batch_size"], ps_config_file=job["config"]) == "OK"
    served = tf.saved_model.load(job["saved_model"])
    test = dict(np.load(os.path.join(workdir, "test_set.npz"), allow_pickle=False))
    lengths = test.pop("genre_lengths")
    test["genre_lists"] = np.split(test.pop("genre_values"), np.cumsum(lengths)[:-1])
    predictions = predict(served.serve, test, job["batch_size"], job["max_genres"])
    np.save(os.path.join(workdir, "served_predictions.npy"), predictions)
    print("served %d predictions" % len(predictions))
    return 0


def deploy(args, workdir, config_path, saved_model_path, test, max_genres):
    """Runs `serve` in a fresh process; returns its predictions."""
    lengths = np.array([len(g) for g in test["genre_lists"]], dtype=np.int64)
    np.savez(os.path.join(workdir, "test_set.npz"), user_keys=test["user_keys"], item_keys=test["item_keys"],
             dense=test["dense"], labels=test["labels"], genre_values=np.concatenate(test["genre_lists"]),
             genre_lengths=lengths)
    with open(os.path.join(workdir, "deploy.json"), "w") as f:
        json.dump({"config": config_path, "saved_model": saved_model_path, "batch_size": args.batch_size,
                   "max_genres": max_genres}, f)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--serve", workdir],
                          capture_output=True, text=True)
    print(proc.stdout.strip())
    if proc.returncode != 0:
        print(proc.stderr[-4000:], file=sys.stderr)
        raise SystemExit("deploy process failed with exit code %d" % proc.returncode)
    return np.load(os.path.join(workdir, "served_predictions.npy"))


def main(argv=None):
    args = parse_args(argv)
    if args.serve:
        return serve(args.serve)
    started = time.time()
    workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix="sok_dlrm_"))
    os.makedirs(workdir, exist_ok=True)
    tf.keras.utils.set_random_seed(0)

    data_dir = movielens_dir() if args.data in ("auto", "movielens") else None
    if args.data == "movielens" and data_dir is None:
        raise SystemExit("--data movielens needs the recbole package (pip install --no-deps recbole==1.2.1)")
    if data_dir:
        print("data: MovieLens-100K from %s (label: rating >= 4)" % data_dir)
        samples = load_movielens(data_dir)
    else:
        print("data: synthetic, fixed seed 0 (install recbole for MovieLens-100K)")
        samples = load_synthetic()
    train_set, test_set = split(samples)
    rows, max_genres = samples["rows"], samples["max_genres"]
    print("samples: %d train, %d test; table rows %s; up to %d genres per sample" % (
        len(train_set["labels"]), len(test_set["labels"]), list(rows), max_genres))

    model = train(args, train_set, rows, max_genres)
    trained_predictions = predict(model, test_set, args.batch_size, max_genres)
    test_auc = auc(test_set["labels"], trained_predictions)
    print("trained model: test AUC %.4f" % test_auc)

    dumps, dense_path = dissect(args, model, workdir)
    config_path = write_config(args, dumps, max_genres, workdir)
    saved_model_path = build_inference_model(args, dense_path, config_path, workdir)
    served_predictions = deploy(args, workdir, config_path, saved_model_path, test_set, max_genres)

    max_diff = float(np.max(np.abs(served_predictions - trained_predictions)))
    served_auc = auc(test_set["labels"], served_predictions)
    print("served model: test AUC %.4f, max |served - trained| %.3g over %d predictions" % (
        served_auc, max_diff, len(served_predictions)))
    min_auc = args.min_auc if data_dir else 0.6
    ok = served_predictions.shape == trained_predictions.shape and max_diff <= 1e-6 and served_auc >= min_auc
    print("%s: %s, served = trained (limit 1e-6), AUC %.4f (at least %.2f), %.0f s" % (
        "PASS" if ok else "FAIL", "MovieLens-100K" if data_dir else "synthetic data", served_auc, min_auc,
        time.time() - started))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
