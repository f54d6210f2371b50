"""``LookupLayer`` and ``SparseLookupLayer``: ``torch.nn.Module`` front ends of ``hps::lookup``."""

import torch
import torch.nn.functional as F

from hierarchical_parameter_server.torch import ops

_MODES = ("sum", "mean", "max")


def _check_table_args(model_name, table_id, emb_vec_size, ps_config_file):
    if not isinstance(model_name, str) or not model_name:
        raise ValueError("model_name must be a non-empty string, got %r" % (model_name,))
    if isinstance(table_id, bool) or not isinstance(table_id, int) or table_id < 0:
        raise ValueError("table_id must be a non-negative int, got %r" % (table_id,))
    if isinstance(emb_vec_size, bool) or not isinstance(emb_vec_size, int) or emb_vec_size <= 0:
        raise ValueError("emb_vec_size must be a positive int, got %r" % (emb_vec_size,))
    if ps_config_file is not None and not isinstance(ps_config_file, str):
        ps_config_file = str(ps_config_file)
    return ps_config_file or ""


def _no_gradient_error(what):
    return RuntimeError(
        "%s requires grad, but HPS layers are inference-only: the tables are served, not trained. "
        "Run under torch.no_grad() / torch.inference_mode() or detach() it; to train, use "
        "torch.nn.EmbeddingBag and export the table (hierarchical_parameter_server.export_table)." % what
    )


class LookupLayer(torch.nn.Module):
    """Looks ids up in table ``table_id`` of model ``model_name`` through the HPS hierarchy (device cache →
    volatile DB → persistent DB → default value); the same result as ``torch.nn.functional.embedding`` on
    the table for keys it holds.

    Args:
        model_name: a model of the configuration.
        table_id: index of the table in the model's ``sparse_files``.
        emb_vec_size: floats per vector (checked against the configuration on first call).
        ps_config_file: if given, the process's server is initialised from it on first call (so the layer,
            or a program exported from it, serves without an explicit ``Init``).

    ``forward(ids)``: int64 ids (int32 with ``supportlonglong: false``) of any shape → float32
    ``ids.shape + (emb_vec_size,)`` on the ids' device. CPU ids are looked up in host memory, CUDA ids on
    their GPU on ``torch.cuda.current_stream()``.
    """

    def __init__(self, model_name, table_id, emb_vec_size, ps_config_file=None):
        super().__init__()
        self.ps_config_file = _check_table_args(model_name, table_id, emb_vec_size, ps_config_file)
        self.model_name = model_name
        self.table_id = table_id
        self.emb_vec_size = emb_vec_size

    def forward(self, ids):
        if not isinstance(ids, torch.Tensor):
            raise ValueError("ids must be a torch.Tensor, got %s" % type(ids).__name__)
        return ops.lookup_fast(ids, self.model_name, self.table_id, self.emb_vec_size, self.ps_config_file)

    def extra_repr(self):
        return "model_name=%r, table_id=%d, emb_vec_size=%d" % (self.model_name, self.table_id, self.emb_vec_size)


class SparseLookupLayer(torch.nn.Module):
    """Pooled lookups with the semantics of ``torch.nn.EmbeddingBag`` over an HPS table.

    Args:
        model_name, table_id, emb_vec_size, ps_config_file: as for :class:`LookupLayer`.
        mode: ``"sum"``, ``"mean"`` (default, as EmbeddingBag) or ``"max"``.
        include_last_offset: as EmbeddingBag: ``offsets`` has one more entry, the end of the last bag.

    ``forward(ids, offsets=None, per_sample_weights=None)``:
        * 1-D ``ids`` with 1-D ``offsets`` (the start of each bag), or
        * 2-D ``ids`` ``[bags, ids_per_bag]`` without offsets;
        * ``per_sample_weights`` (float32, the shape of ``ids``) only with ``mode="sum"``.
    Returns float32 ``[bags, emb_vec_size]``; an empty bag gives zeros. The ids are looked up through HPS
    and the rows pooled with ``torch.nn.functional.embedding_bag``, so the result is that of EmbeddingBag
    on the table.
    """

    def __init__(self, model_name, table_id, emb_vec_size, mode="mean", include_last_offset=False, ps_config_file=None):
        super().__init__()
        self.ps_config_file = _check_table_args(model_name, table_id, emb_vec_size, ps_config_file)
        if mode not in _MODES:
            raise ValueError("mode must be one of %s, got %r" % (", ".join(repr(m) for m in _MODES), mode))
        self.model_name = model_name
        self.table_id = table_id
        self.emb_vec_size = emb_vec_size
        self.mode = mode
        self.include_last_offset = bool(include_last_offset)

    def forward(self, ids, offsets=None, per_sample_weights=None):
        if not isinstance(ids, torch.Tensor):
            raise ValueError("ids must be a torch.Tensor, got %s" % type(ids).__name__)
        if ids.dim() == 2:
            if offsets is not None:
                raise ValueError("offsets must be None when ids is 2-D (each row of ids is one bag)")
        elif ids.dim() == 1:
            if offsets is None:
                raise ValueError("1-D ids need offsets (the index in ids where each bag starts)")
            if not isinstance(offsets, torch.Tensor) or offsets.dim() != 1:
                raise ValueError("offsets must be a 1-D tensor, got %s" % (
                    "shape %s" % (tuple(offsets.shape),) if isinstance(offsets, torch.Tensor) else type(offsets).__name__))
            if offsets.dtype not in (torch.int64, torch.int32):
                raise ValueError("offsets must be int64 or int32, got %s" % offsets.dtype)
            if offsets.device != ids.device:
                raise ValueError("offsets are on %s but ids on %s" % (offsets.device, ids.device))
        else:
            raise ValueError("ids must be 1-D (with offsets) or 2-D (one bag per row), got shape %s" % (tuple(ids.shape),))
        if per_sample_weights is not None:
            if self.mode != "sum":
                raise ValueError(
                    "per_sample_weights is only supported with mode='sum' (as torch.nn.EmbeddingBag), this layer has mode=%r"
                    % self.mode
                )
            if not isinstance(per_sample_weights, torch.Tensor) or per_sample_weights.shape != ids.shape:
                raise ValueError("per_sample_weights must have the shape of ids %s, got %s" % (
                    tuple(ids.shape), tuple(per_sample_weights.shape) if isinstance(per_sample_weights, torch.Tensor) else type(per_sample_weights).__name__))
            if per_sample_weights.dtype != torch.float32:
                raise ValueError("per_sample_weights must be float32 (the dtype of the vectors), got %s" % per_sample_weights.dtype)
            if per_sample_weights.requires_grad and torch.is_grad_enabled():
                raise _no_gradient_error("per_sample_weights")
        rows = ops.lookup_fast(ids.reshape(-1), self.model_name, self.table_id, self.emb_vec_size, self.ps_config_file)
        positions = torch.arange(ids.numel(), dtype=torch.int64, device=ids.device).reshape(ids.shape)
        if offsets is not None:
            offsets = offsets.to(torch.int64)
        return F.embedding_bag(
            positions, rows, offsets, mode=self.mode, per_sample_weights=per_sample_weights,
            include_last_offset=self.include_last_offset,
        )

    def extra_repr(self):
        return "model_name=%r, table_id=%d, emb_vec_size=%d, mode=%r%s" % (
            self.model_name, self.table_id, self.emb_vec_size, self.mode,
            ", include_last_offset=True" if self.include_last_offset else "")
