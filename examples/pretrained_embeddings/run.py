"""Pre-trained embeddings for new training (NVIDIA's hps_pretrained_model_training_demo notebook, on two
logical CPU devices instead of four GPUs).

1. Pre-train once: a DNN whose table is a native TensorFlow variable (tf.nn.embedding_lookup_sparse, mean
   over up to --max-nnz keys per slot) learns a click task; the table is exported in HPS's format.
2. New training: a new Keras model reads that table through hps.LookupLayer as a frozen feature layer
   (the lookup op has no gradient and needs none) and trains only its own dense layers with model.fit under
   tf.distribute.MirroredStrategy over two logical CPU devices; HPS serves one lookup session per replica
   (`deployed_device_list: [0, 1]`).
3. Checks: the loss goes down, the embeddings the model sees are identical to the table files (and the
   files are unchanged), and the saved model reloads in a fresh process with a one-device serving config
   and gives the same predictions.

Data: synthetic, drawn with a fixed seed; labels follow a hidden score of the keys so that the
pre-trained embeddings carry signal the new model can use.

    python examples/pretrained_embeddings/run.py [--workdir DIR] [--epochs 5]
"""

import os

# Two logical CPU devices for MirroredStrategy (set before TensorFlow starts its runtime).
import tensorflow as tf

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import hierarchical_parameter_server as hps  # noqa: E402

keras = tf.keras
MODEL_NAME = "dnn"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default=None, help="where the table, models and configs go (default: a temp dir)")
    p.add_argument("--slot-num", type=int, default=10)
    p.add_argument("--max-nnz", type=int, default=3, help="keys per slot in pre-training (1..max_nnz, mean)")
    p.add_argument("--vocabulary-per-slot", type=int, default=1000)
    p.add_argument("--embed-vec-size", type=int, default=16)
    p.add_argument("--samples", type=int, default=40960)
    p.add_argument("--global-batch-size", type=int, default=1024)
    p.add_argument("--pretrain-steps", type=int, default=200)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--reload", default=None, help=argparse.SUPPRESS)  # internal: reload check in a fresh process
    return p.parse_args(argv)


class World:
    """A fixed-seed synthetic click world: slot s draws keys from [s·V, (s+1)·V); every key has a hidden
    score and a sample clicks with probability sigmoid(sum of its keys' scores)."""

    def __init__(self, args, seed=0):
        self.args = args
        self.rng = np.random.RandomState(seed)
        self.vocabulary = args.slot_num * args.vocabulary_per_slot
        self.hidden = self.rng.normal(scale=0.6, size=self.vocabulary)

    def keys(self, n, nnz=1):
        """[n, slot_num, nnz] keys; slot s from its own range."""
        v = self.args.vocabulary_per_slot
        base = (np.arange(self.args.slot_num) * v)[None, :, None]
        return (base + self.rng.randint(0, v, size=(n, self.args.slot_num, nnz))).astype(np.int64)

    def labels(self, score):
        return (self.rng.uniform(size=score.shape) < 1 / (1 + np.exp(-score))).astype(np.float32)


# ------------------------------------------------------------------------------------- 1. pre-train once

def pretrain(args, world, workdir):
    """Trains a DNN with a native sparse lookup (mean over 1..max_nnz keys per slot); exports its table."""
    table = tf.Variable(tf.random.uniform((world.vocabulary, args.embed_vec_size), -0.05, 0.05, seed=1), name="table")
    fc1 = keras.layers.Dense(64, activation="relu")
    fc2 = keras.layers.Dense(1, activation="sigmoid")
    optimizer = keras.optimizers.Adam(learning_rate=0.01)
    loss_fn = keras.losses.BinaryCrossentropy()
    n, slots = args.global_batch_size, args.slot_num

    @tf.function
    def step(sp_ids, labels):
        with tf.GradientTape() as tape:
            pooled = tf.nn.embedding_lookup_sparse(table, sp_ids, None, combiner="mean")  # [n·slots, dim]
            probs = fc2(fc1(tf.reshape(pooled, [-1, slots * args.embed_vec_size])))
            loss = loss_fn(labels, probs)
        variables = [table] + fc1.trainable_variables + fc2.trainable_variables
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    for i in range(args.pretrain_steps):
        keys = world.keys(n, args.max_nnz)
        nnz = world.rng.randint(1, args.max_nnz + 1, size=(n, slots))
        mask = np.arange(args.max_nnz)[None, None, :] < nnz[:, :, None]
        score = np.where(mask, world.hidden[keys], 0).sum(-1) / nnz
        labels = world.labels(score.sum(-1))[:, None]
        flat_mask = mask.reshape(n * slots, args.max_nnz)
        sp_ids = tf.SparseTensor(np.argwhere(flat_mask).astype(np.int64), keys.reshape(n * slots, -1)[flat_mask],
                                 [n * slots, args.max_nnz])
        loss = step(sp_ids, labels)
        if i % 50 == 0 or i == args.pretrain_steps - 1:
            print("pre-train step %d: loss %.4f" % (i, float(loss)))
    table_dir = os.path.join(workdir, "dnn_sparse.model")
    hps.export_table(table_dir, table)
    print("exported the pre-trained table: %d × %d to %s" % (world.vocabulary, args.embed_vec_size, table_dir))
    return table_dir


def write_config(args, table_dir, path, devices):
    config = {
        "supportlonglong": True,
        "models": [{
            "model": MODEL_NAME,
            "sparse_files": [table_dir],
            "num_of_worker_buffer_in_pool": 3,
            "embedding_table_names": ["sparse_embedding0"],
            "embedding_vecsize_per_table": [args.embed_vec_size],
            "maxnum_catfeature_query_per_table_per_sample": [args.slot_num],
            "default_value_for_each_table": [0.0],
            "deployed_device_list": devices,
            "max_batch_size": args.global_batch_size,
            "cache_refresh_percentage_per_iteration": 0.2,
            "hit_rate_threshold": 1.0,
            "gpucacheper": 1.0,
            "gpucache": True,
        }],
    }
    with open(path, "w") as f:
        json.dump(config, f, indent=2)
    return path


def file_digest(table_dir):
    h = hashlib.sha256()
    for name in ("key", "emb_vector"):
        with open(os.path.join(table_dir, name), "rb") as f:
            h.update(f.read())
    return h.hexdigest()


# --------------------------------------------------------------------------------------- 2. new training

def build_model(args, config_path):
    """ids [batch, slot_num] → frozen hps.LookupLayer → new trainable dense layers → click probability.
    Returns (model, embedding model sharing the lookup layer)."""
    ids = keras.Input(shape=(args.slot_num,), dtype="int64", name="ids")
    lookup = hps.LookupLayer(model_name=MODEL_NAME, table_id=0, emb_vec_size=args.embed_vec_size,
                             emb_vec_dtype=tf.float32, ps_config_file=config_path,
                             global_batch_size=args.global_batch_size, name="pretrained_embedding", trainable=False)
    vectors = lookup(ids)
    x = keras.layers.Flatten(name="flatten")(vectors)
    x = keras.layers.Dense(64, activation="relu", name="new_fc1")(x)
    prob = keras.layers.Dense(1, activation="sigmoid", name="new_fc2")(x)
    model = keras.Model(ids, prob, name="pretrained_dnn")
    return model, keras.Model(ids, vectors, name="pretrained_embedding_only")


def new_training(args, world, table_dir, config_path):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    print("MirroredStrategy over %d replicas" % strategy.num_replicas_in_sync)
    with strategy.scope():
        status = hps.Init(global_batch_size=args.global_batch_size, ps_config_file=config_path)
        assert tuple(status) == ("OK",) * strategy.num_replicas_in_sync, status
        model, embedding_model = build_model(args, config_path)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.003), loss="binary_crossentropy")
    trainable = [getattr(v, "path", v.name) for v in model.trainable_variables]
    assert all("new_fc" in v for v in trainable) and len(trainable) == 4, trainable

    ids = world.keys(args.samples)[:, :, 0]
    labels = world.labels(world.hidden[ids].sum(-1))[:, None]
    dataset = tf.data.Dataset.from_tensor_slices((ids, labels)).shuffle(args.samples, seed=0)
    dataset = dataset.batch(args.global_batch_size, drop_remainder=True)
    initial = model.evaluate(dataset, verbose=0)
    history = model.fit(dataset, epochs=args.epochs, verbose=2)
    losses = [initial] + history.history["loss"]

    probe = world.keys(args.global_batch_size)[:, :, 0]
    seen = embedding_model.predict(probe, batch_size=args.global_batch_size, verbose=0)
    predictions = model.predict(probe, batch_size=args.global_batch_size, verbose=0)
    return model, losses, probe, seen, predictions


# ------------------------------------------------------------------------------------------ 3. reload

def reload_check(workdir):
    """Fresh process: one-device serving config, hps.Init, load the SavedModel, predict the probe."""
    with open(os.path.join(workdir, "reload.json")) as f:
        job = json.load(f)
    assert hps.Init(global_batch_size=job["batch_size"], ps_config_file=job["config"]) == "OK"
    loaded = tf.saved_model.load(job["saved_model"])
    probe = np.load(os.path.join(workdir, "probe.npy"))
    np.save(os.path.join(workdir, "reloaded_predictions.npy"), loaded.serve(tf.constant(probe)).numpy())
    print("reloaded %s and predicted %d samples" % (job["saved_model"], len(probe)))
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.reload:
        return reload_check(args.reload)
    started = time.time()
    workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix="pretrained_embeddings_"))
    os.makedirs(workdir, exist_ok=True)
    tf.keras.utils.set_random_seed(0)
    world = World(args)

    table_dir = pretrain(args, world, workdir)
    digest = file_digest(table_dir)
    config_path = write_config(args, table_dir, os.path.join(workdir, "dnn.json"), [0, 1])
    model, losses, probe, seen, predictions = new_training(args, world, table_dir, config_path)

    keys, vectors = hps.read_table(table_dir, emb_vec_size=args.embed_vec_size)
    assert np.array_equal(keys, np.arange(world.vocabulary))
    embeddings_identical = np.array_equal(seen, vectors[probe]) and file_digest(table_dir) == digest
    loss_down = losses[-1] < 0.9 * losses[0] and losses[-1] < losses[1]
    print("loss before training %.4f, after each epoch: %s" % (losses[0], ", ".join("%.4f" % v for v in losses[1:])))
    print("embeddings seen by the model == table files: %s" % embeddings_identical)

    saved_model = os.path.join(workdir, "pretrained_dnn_saved_model")
    model.export(saved_model) if "verbose" not in model.export.__code__.co_varnames else model.export(saved_model, verbose=False)
    np.save(os.path.join(workdir, "probe.npy"), probe)
    serving_config = write_config(args, table_dir, os.path.join(workdir, "dnn_serving.json"), [0])
    with open(os.path.join(workdir, "reload.json"), "w") as f:
        json.dump({"config": serving_config, "saved_model": saved_model, "batch_size": args.global_batch_size}, f)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--reload", workdir], capture_output=True, text=True)
    print(proc.stdout.strip())
    if proc.returncode != 0:
        print(proc.stderr[-4000:], file=sys.stderr)
        raise SystemExit("reload process failed with exit code %d" % proc.returncode)
    reloaded = np.load(os.path.join(workdir, "reloaded_predictions.npy"))
    reload_diff = float(np.max(np.abs(reloaded - predictions)))
    print("reloaded predictions: max |reloaded - trained| %.3g" % reload_diff)

    ok = loss_down and embeddings_identical and reload_diff <= 1e-6
    print("%s: loss %.4f -> %.4f, embeddings identical to the table files: %s, reloaded max |Δ| %.3g, %.0f s" % (
        "PASS" if ok else "FAIL", losses[0], losses[-1], embeddings_identical, reload_diff, time.time() - started))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
