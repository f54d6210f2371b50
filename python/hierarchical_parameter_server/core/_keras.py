"""The Keras in use: ``tf.keras`` (Keras 3 by default; tf-keras when ``TF_USE_LEGACY_KERAS=1``)."""

import tensorflow as tf

keras = tf.keras


def register_serializable(cls):
    """Registers ``cls`` for Keras (de)serialization under the package name."""
    register = getattr(getattr(keras, "saving", None), "register_keras_serializable", None)
    if register is None:
        register = keras.utils.register_keras_serializable
    return register(package="hierarchical_parameter_server")(cls)


def dtype_name(dtype):
    """``tf.float32`` / ``"float32"`` / numpy dtype → ``"float32"``."""
    return tf.as_dtype(dtype).name


class HPSLayerBase(keras.layers.Layer):
    """Constructor, attributes and ``get_config`` shared by ``LookupLayer`` and ``SparseLookupLayer``."""

    def __init__(
        self,
        model_name,
        table_id,
        emb_vec_size,
        emb_vec_dtype,
        ps_config_file="",
        global_batch_size=1,
        **kwargs,
    ):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.model_name = model_name
        self.table_id = int(table_id)
        self.emb_vec_size = int(emb_vec_size)
        self.emb_vec_dtype = tf.as_dtype(emb_vec_dtype)
        if self.emb_vec_dtype != tf.float32:
            raise ValueError("emb_vec_dtype must be tf.float32, got %s" % self.emb_vec_dtype.name)
        self.ps_config_file = str(ps_config_file)
        self.global_batch_size = int(global_batch_size)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "model_name": self.model_name,
                "table_id": self.table_id,
                "emb_vec_size": self.emb_vec_size,
                "emb_vec_dtype": dtype_name(self.emb_vec_dtype),
                "ps_config_file": self.ps_config_file,
                "global_batch_size": self.global_batch_size,
            }
        )
        return config
