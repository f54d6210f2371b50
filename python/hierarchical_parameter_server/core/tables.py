"""Embedding-table files: write trained tables in HPS's format, read them back, convert SOK dumps.

A table is a directory with two files: ``key`` (int64, little-endian, one per row) and ``emb_vector``
(float32, little-endian, rows × emb_vec_size), in the same row order. Point ``sparse_files`` of the HPS
config at the directory.
"""

import glob
import os
import sys

import numpy as np

KEY_FILE = "key"
VECTOR_FILE = "emb_vector"


def _torch_object(value):
    """``(torch, value)`` when ``value`` is a torch tensor or module, else ``(None, value)``. Looks at
    ``sys.modules`` only: torch is never imported here, so a user who gives no torch object never loads it."""
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "Tensor"):
        return None, value
    if isinstance(value, (torch.Tensor, torch.nn.Module)):
        return torch, value
    return None, value


def _torch_to_numpy(torch, value, what):
    """A NumPy array from a torch tensor (any device, requires_grad or not) or an nn.Embedding /
    nn.EmbeddingBag (its ``weight``)."""
    if isinstance(value, torch.nn.Module):
        weight = getattr(value, "weight", None)
        if not isinstance(weight, torch.Tensor):
            raise ValueError(
                "%s: expected a torch.nn.Embedding / EmbeddingBag (a module with a .weight tensor), got %s"
                % (what, type(value).__name__)
            )
        value = weight
    value = value.detach()
    if value.is_floating_point() and value.dtype not in (torch.float32, torch.float64):
        value = value.to(torch.float32)  # bfloat16 / float16: NumPy has no bfloat16
    return value.cpu().numpy()


def _to_numpy(vectors):
    """A 2-D float32 array from a NumPy array, a tf.Variable / tf.Tensor, a Keras Embedding layer, a torch
    tensor, or a torch nn.Embedding / nn.EmbeddingBag."""
    torch, vectors = _torch_object(vectors)
    if torch is not None:
        vectors = _torch_to_numpy(torch, vectors, "vectors")
    elif hasattr(vectors, "embeddings") and not isinstance(vectors, np.ndarray):  # Keras Embedding layer
        vectors = vectors.embeddings
    elif hasattr(vectors, "get_weights") and not hasattr(vectors, "numpy"):  # another layer with one weight
        weights = vectors.get_weights()
        if len(weights) != 1:
            raise ValueError("expected a layer with exactly one weight (the embedding table), got %d" % len(weights))
        vectors = weights[0]
    if hasattr(vectors, "numpy"):
        vectors = vectors.numpy()
    array = np.asarray(vectors)
    if array.ndim != 2:
        raise ValueError("an embedding table must be 2-D (rows × emb_vec_size), got shape %s" % (array.shape,))
    return np.ascontiguousarray(array, dtype="<f4")


def export_table(path, vectors, keys=None):
    """Writes an embedding table in HPS's format into directory ``path`` (created if missing).

    Args:
        path: the table directory to write (``key`` and ``emb_vector`` inside).
        vectors: the table, shape ``[rows, emb_vec_size]``: a NumPy array, a ``tf.Variable``/``tf.Tensor``, a
            Keras ``Embedding`` layer, a ``torch.Tensor`` (any device; detached), or a
            ``torch.nn.Embedding`` / ``torch.nn.EmbeddingBag`` (its ``weight``).
        keys: the key of each row (int64; NumPy, TF or torch); default ``0 .. rows-1``. Keys must be unique.

    Returns:
        ``path``.
    """
    array = _to_numpy(vectors)
    rows = array.shape[0]
    if keys is None:
        key_array = np.arange(rows, dtype="<i8")
    else:
        torch, keys = _torch_object(keys)
        if torch is not None:
            keys = _torch_to_numpy(torch, keys, "keys")
        elif hasattr(keys, "numpy"):
            keys = keys.numpy()
        key_array = np.ascontiguousarray(np.asarray(keys).reshape(-1), dtype="<i8")
        if key_array.shape[0] != rows:
            raise ValueError("%d keys for %d rows: give one key per row" % (key_array.shape[0], rows))
        if np.unique(key_array).shape[0] != rows:
            raise ValueError("keys must be unique")
    os.makedirs(path, exist_ok=True)
    key_array.tofile(os.path.join(path, KEY_FILE))
    array.tofile(os.path.join(path, VECTOR_FILE))
    return path


def read_table(path, emb_vec_size=None):
    """Reads a table directory: returns ``(keys int64 [rows], vectors float32 [rows, emb_vec_size])``.

    ``emb_vec_size`` is inferred from the file sizes when omitted.
    """
    keys = np.fromfile(os.path.join(path, KEY_FILE), dtype="<i8")
    flat = np.fromfile(os.path.join(path, VECTOR_FILE), dtype="<f4")
    rows = keys.shape[0]
    if emb_vec_size is None:
        if rows == 0 or flat.shape[0] % rows != 0:
            raise ValueError("%s: emb_vector holds %d floats, not a multiple of the %d keys" % (path, flat.shape[0], rows))
        emb_vec_size = flat.shape[0] // rows
    if flat.shape[0] != rows * emb_vec_size:
        raise ValueError(
            "%s: emb_vector holds %d floats, expected %d keys × %d = %d"
            % (path, flat.shape[0], rows, emb_vec_size, rows * emb_vec_size)
        )
    return keys, flat.reshape(rows, emb_vec_size)


def _sok_files(dump_dir, name):
    if name is None:
        found = sorted(glob.glob(os.path.join(dump_dir, "*_keys.file")))
        if not found:
            raise FileNotFoundError("%s: no SOK dump (*_keys.file) found" % dump_dir)
        if len(found) > 1:
            names = [os.path.basename(f)[: -len("_keys.file")] for f in found]
            raise ValueError("%s holds several SOK dumps (%s): pass name=" % (dump_dir, ", ".join(names)))
        name = os.path.basename(found[0])[: -len("_keys.file")]
    keys_file = os.path.join(dump_dir, name + "_keys.file")
    values_file = os.path.join(dump_dir, name + "_values.file")
    for f in (keys_file, values_file):
        if not os.path.isfile(f):
            raise FileNotFoundError("%s: missing SOK dump file %s" % (dump_dir, os.path.basename(f)))
    return keys_file, values_file


def read_sok_dump(dump_dir, name=None, emb_vec_size=None):
    """Reads a SOK dump (``sok.Saver.dump_to_file``): ``<name>_keys.file`` (int64) and ``<name>_values.file``
    (float32). ``name`` defaults to the only dump in ``dump_dir`` (e.g. ``EmbeddingVariable``).

    Returns ``(keys, vectors)``.
    """
    keys_file, values_file = _sok_files(dump_dir, name)
    keys = np.fromfile(keys_file, dtype="<i8")
    flat = np.fromfile(values_file, dtype="<f4")
    rows = keys.shape[0]
    if emb_vec_size is None:
        if rows == 0 or flat.shape[0] % rows != 0:
            raise ValueError("%s holds %d floats, not a multiple of the %d keys" % (values_file, flat.shape[0], rows))
        emb_vec_size = flat.shape[0] // rows
    if flat.shape[0] != rows * emb_vec_size:
        raise ValueError("%s holds %d floats, expected %d × %d" % (values_file, flat.shape[0], rows, emb_vec_size))
    return keys, flat.reshape(rows, emb_vec_size)


def sok_dump_to_table(dump_dir, path, name=None, emb_vec_size=None):
    """Converts a SOK dump in ``dump_dir`` into an HPS table directory ``path``. Returns ``path``."""
    keys, vectors = read_sok_dump(dump_dir, name=name, emb_vec_size=emb_vec_size)
    return export_table(path, vectors, keys=keys)
