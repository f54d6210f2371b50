"""The basic HPS workflow end to end (NVIDIA's hierarchical_parameter_server_demo, scaled to run on a laptop CPU).

1. Train a small DNN whose embedding is a native TensorFlow lookup (tf.nn.embedding_lookup on a variable).
2. Dissect it: export the trained embedding table in HPS's format (`key`, `emb_vector`) and save the dense part.
3. Build the inference model from hps.LookupLayer + the saved dense part, and save it as a SavedModel.
4. Deploy: write the HPS config, hps.Init, load the SavedModel and serve fresh batches; the logits and
   embeddings must match the trained model's (MSE ≤ 1e-6).

    python examples/naive_dnn/naive_dnn.py [--workdir DIR] [--global-batch-size 16384] [--iter-num 10]
"""

import argparse
import json
import os
import sys
import tempfile

import numpy as np
import tensorflow as tf

import hierarchical_parameter_server as hps

keras = tf.keras


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default=None, help="where the table, models and config go (default: a temp dir)")
    p.add_argument("--iter-num", type=int, default=10)
    p.add_argument("--slot-num", type=int, default=3)
    p.add_argument("--embed-vec-size", type=int, default=16)
    p.add_argument("--global-batch-size", type=int, default=16384)
    p.add_argument("--max-vocabulary-size", type=int, default=30000)
    return p.parse_args(argv)


def generate_ids(args, rng, n):
    """`n` samples × slot_num keys; slot s draws from [s·V/slots, (s+1)·V/slots)."""
    per_slot = args.max_vocabulary_size // args.slot_num
    cols = [rng.randint(s * per_slot, (s + 1) * per_slot, size=(n, 1)) for s in range(args.slot_num)]
    return np.concatenate(cols, axis=1).astype(np.int64)


class NativeEmbedding(keras.layers.Layer):
    """A trainable table looked up with tf.nn.embedding_lookup (the 'native TF embedding' of the workflow)."""

    def __init__(self, vocabulary_size, embed_vec_size, **kwargs):
        super().__init__(**kwargs)
        self.table = self.add_weight(name="table", shape=(vocabulary_size, embed_vec_size), initializer="ones")

    def call(self, ids):
        return tf.nn.embedding_lookup(tf.convert_to_tensor(self.table), ids)


class TrainModel(keras.Model):
    def __init__(self, args, **kwargs):
        super().__init__(**kwargs)
        self.dense_dim = args.slot_num * args.embed_vec_size
        self.embedding = NativeEmbedding(args.max_vocabulary_size, args.embed_vec_size, name="embedding")
        self.fc_1 = keras.layers.Dense(256, kernel_initializer="ones", bias_initializer="zeros", name="fc_1")
        self.fc_2 = keras.layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros", name="fc_2")

    def call(self, ids):
        vectors = self.embedding(ids)
        logits = self.fc_2(self.fc_1(tf.reshape(vectors, [-1, self.dense_dim])))
        return logits, vectors


def train(args, rng):
    model = TrainModel(args)
    optimizer = keras.optimizers.Adam(learning_rate=0.1)
    loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)

    @tf.function
    def step(ids, labels):
        with tf.GradientTape() as tape:
            logits, _ = model(ids)
            loss = loss_fn(labels, logits)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    for i in range(args.iter_num):
        ids = generate_ids(args, rng, args.global_batch_size)
        labels = rng.randint(0, 2, size=(args.global_batch_size, 1)).astype(np.float32)
        loss = step(ids, labels)
        print("train step %d: loss %.4f" % (i, float(loss)))
    return model


def dissect(args, model, workdir):
    """Exports the table in HPS's format and saves the dense part; returns (table dir, dense model path)."""
    table_dir = os.path.join(workdir, "naive_dnn_sparse.model")
    table = model.embedding.table.numpy()
    print("trained table: %d of %d rows changed by training" % (int(np.any(table != 1.0, axis=1).sum()), table.shape[0]))
    hps.export_table(table_dir, model.embedding.table)
    print("exported table: key %d B, emb_vector %d B" % (
        os.path.getsize(os.path.join(table_dir, "key")), os.path.getsize(os.path.join(table_dir, "emb_vector"))))
    dense_in = keras.Input(shape=(model.dense_dim,), dtype="float32")
    dense = keras.Model(dense_in, model.fc_2(model.fc_1(dense_in)), name="naive_dnn_dense")
    dense_path = os.path.join(workdir, "naive_dnn_dense.keras")
    dense.save(dense_path)
    return table_dir, dense_path


def build_inference_model(args, dense_path, workdir):
    """hps.LookupLayer + the saved dense part, saved as a SavedModel; returns its path."""
    dense = keras.models.load_model(dense_path)
    ids = keras.Input(shape=(args.slot_num,), dtype="int64", name="ids")
    vectors = hps.LookupLayer(model_name="naive_dnn", table_id=0, emb_vec_size=args.embed_vec_size,
                              emb_vec_dtype=tf.float32, name="lookup")(ids)
    logits = dense(keras.layers.Reshape((args.slot_num * args.embed_vec_size,))(vectors))
    model = keras.Model(ids, [logits, vectors], name="naive_dnn_inference")
    path = os.path.join(workdir, "naive_dnn_tf_saved_model")
    if hasattr(model, "export"):
        model.export(path)
    else:
        tf.saved_model.save(model, path)
    return path


def write_config(args, table_dir, workdir):
    config = {
        "supportlonglong": True,
        "models": [{
            "model": "naive_dnn",
            "sparse_files": [table_dir],
            "num_of_worker_buffer_in_pool": 3,
            "embedding_table_names": ["sparse_embedding0"],
            "embedding_vecsize_per_table": [args.embed_vec_size],
            "maxnum_catfeature_query_per_table_per_sample": [args.slot_num],
            "default_value_for_each_table": [1.0],
            "deployed_device_list": [0],
            "max_batch_size": args.global_batch_size,
            "cache_refresh_percentage_per_iteration": 0.2,
            "hit_rate_threshold": 1.0,
            "gpucacheper": 1.0,
            "gpucache": True,
        }],
    }
    path = os.path.join(workdir, "naive_dnn.json")
    with open(path, "w") as f:
        json.dump(config, f, indent=2)
    return path


def deploy(args, config_path, saved_model_path, trained, rng):
    """hps.Init, load the SavedModel, serve fresh batches; returns the worst (logits MSE, embeddings MSE)."""
    assert hps.Init(global_batch_size=args.global_batch_size, ps_config_file=config_path) == "OK"
    served = tf.saved_model.load(saved_model_path)
    table = trained.embedding.table.numpy()
    worst = (0.0, 0.0)
    for i in range(args.iter_num):
        ids = generate_ids(args, rng, args.global_batch_size)
        logits, vectors = served.serve(tf.constant(ids))
        want_logits, _ = trained(ids)
        want_vectors = tf.nn.embedding_lookup(table, ids)
        mse_logits = float(tf.reduce_mean(tf.square(logits - want_logits)))
        mse_vectors = float(tf.reduce_mean(tf.square(vectors - want_vectors)))
        worst = (max(worst[0], mse_logits), max(worst[1], mse_vectors))
        print("inference batch %d: logits MSE %.3g, embeddings MSE %.3g" % (i, mse_logits, mse_vectors))
    return worst


def main(argv=None):
    args = parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix="naive_dnn_")
    os.makedirs(workdir, exist_ok=True)
    rng = np.random.RandomState(0)
    trained = train(args, rng)
    table_dir, dense_path = dissect(args, trained, workdir)
    saved_model_path = build_inference_model(args, dense_path, workdir)
    config_path = write_config(args, table_dir, workdir)
    mse_logits, mse_vectors = deploy(args, config_path, saved_model_path, trained, rng)
    ok = mse_logits <= 1e-6 and mse_vectors <= 1e-6
    print("%s: worst logits MSE %.3g, worst embeddings MSE %.3g (limit 1e-6)" % ("PASS" if ok else "FAIL", mse_logits, mse_vectors))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
