"""The custom op ``hps::lookup``, registered through ``torch.library``.

``torch.ops.hps.lookup(ids, model_name, table_id, emb_vec_size, ps_config_file)`` returns the float32
vectors of ``ids`` (int64, or int32 for a ``supportlonglong: false`` configuration), shape
``ids.shape + (emb_vec_size,)``, on the ids' device. ``ps_config_file`` may be ``""`` when ``Init`` already
ran; otherwise the op initialises the process's server from it on first use (so an exported program
loaded in a fresh process serves after ``import hierarchical_parameter_server.torch``).

* CPU ids are looked up in host memory through the session of the model's first deployed device.
* CUDA ids on ``cuda:N`` are looked up in device memory through the session of device N, enqueued on
  ``torch.cuda.current_stream(N)``; a device that is not in the model's ``deployed_device_list`` is a
  ValueError.
* A call with more keys than the table takes in one lookup (``hps_table_max_keys``: max_batch_size ×
  maxnum_catfeature_query_per_table_per_sample) is split into consecutive lookups of at most that many
  keys, in order; the result is the same as one lookup (with ``hit_rate_threshold`` below 1 each chunk
  decides on its own hit rate).

The op has a fake (meta) implementation, so ``torch.compile`` keeps it as one node and ``torch.export``
traces through it, and an autograd formula that raises: HPS tables are served, not trained.

The layers call :func:`lookup_fast`, which runs the op's implementation directly for a plain eager tensor
(dispatching a custom op costs about 10 µs of Python) and dispatches ``hps::lookup`` whenever anything is
tracing, compiling or wrapping the tensor, so graphs always hold the op.
"""

import torch

from hierarchical_parameter_server.torch import _capi, _server

OP_NAME = "hps::lookup"

_KEY_DTYPES = (torch.int64, torch.int32)


def _check_args(ids, emb_vec_size):
    if not isinstance(ids, torch.Tensor):
        raise ValueError("ids must be a torch.Tensor, got %s" % type(ids).__name__)
    if ids.dtype not in _KEY_DTYPES:
        raise ValueError("ids must be int64 (or int32 with supportlonglong: false), got %s" % ids.dtype)
    if emb_vec_size <= 0:
        raise ValueError("emb_vec_size must be positive, got %d" % emb_vec_size)


_resolved = {}  # (model, table, emb_vec_size, device, dtype, ps_config_file) -> (binding, memory kind)


def _resolve(ids, model_name, table_id, emb_vec_size, ps_config_file):
    """The table binding, memory kind and stream for a lookup of ``ids`` (checked once per combination)."""
    device = ids.device
    key = (model_name, table_id, emb_vec_size, device, ids.dtype, ps_config_file)
    found = _resolved.get(key)
    if found is None:
        found = _resolve_slow(device, ids.dtype, model_name, table_id, emb_vec_size, ps_config_file)
        _resolved[key] = found
    bound, memory = found
    if memory == _capi.HPS_MEMORY_DEVICE:
        return bound, memory, current_cuda_stream(bound.device)
    return bound, memory, None


def current_cuda_stream(index):
    """The raw ``cudaStream_t`` of ``torch.cuda.current_stream(index)``, as an int."""
    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    if raw is not None:  # a CUDA build of torch: one C call, no Stream object (the public way costs ~10 µs)
        return raw(index)
    return torch.cuda.current_stream(index).cuda_stream


def _resolve_slow(device, dtype, model_name, table_id, emb_vec_size, ps_config_file):
    _server.ensure(ps_config_file)
    if device.type == "cpu":
        bound = _server.binding(model_name, table_id, _server.host_device(model_name), ps_config_file)
        memory = _capi.HPS_MEMORY_HOST
    elif device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        bound = _server.binding(model_name, table_id, index, ps_config_file)
        memory = _capi.HPS_MEMORY_DEVICE
    else:
        raise ValueError("ids are on device %s: HPS looks up CPU and CUDA tensors only" % device)
    if bound.dim != emb_vec_size:
        raise ValueError(
            "emb_vec_size is %d, but table %d of model %r has vectors of %d floats"
            % (emb_vec_size, table_id, model_name, bound.dim)
        )
    if bound.int64_keys != (dtype == torch.int64):
        if bound.int64_keys:
            raise ValueError(
                "model %r takes int64 keys (supportlonglong: true), got %s ids: convert them with ids.long()"
                % (model_name, dtype)
            )
        raise ValueError(
            "model %r takes int32 keys (supportlonglong: false), got %s ids: convert them with ids.int()"
            % (model_name, dtype)
        )
    return bound, memory


def lookup_into(ids, out, bound, memory, stream):
    """Looks contiguous ``ids`` up into contiguous float32 ``out`` (numel(ids) × dim), in chunks of at most
    ``bound.max_keys`` keys."""
    count = ids.numel()
    if count == 0:
        return out
    c = _capi.lib()
    fn = c.hps_lookup if bound.int64_keys else c.hps_lookup_i32
    key_bytes = ids.element_size()
    row_bytes = 4 * bound.dim
    keys_ptr = ids.data_ptr()
    out_ptr = out.data_ptr()
    step = bound.max_keys if bound.max_keys > 0 else count
    start = 0
    while start < count:
        n = min(step, count - start)
        status = fn(bound.handle, bound.table, keys_ptr + start * key_bytes, n, out_ptr + start * row_bytes, memory, stream)
        if status != 0:
            raise _capi.error(status, "lookup of %d keys in table %d of model %r" % (n, bound.table, bound.model))
        start += n
    return out


def lookup_eager(ids, model_name, table_id, emb_vec_size, ps_config_file=""):
    """The implementation of ``hps::lookup`` on real tensors."""
    _check_args(ids, emb_vec_size)
    bound, memory, stream = _resolve(ids, model_name, table_id, emb_vec_size, ps_config_file)
    ids = ids.contiguous()
    out = torch.empty(ids.shape + (emb_vec_size,), dtype=torch.float32, device=ids.device)
    return lookup_into(ids, out, bound, memory, stream)


@torch.library.custom_op(OP_NAME, mutates_args=())
def lookup(ids: torch.Tensor, model_name: str, table_id: int, emb_vec_size: int, ps_config_file: str = "") -> torch.Tensor:
    """float32 vectors of ``ids`` from table ``table_id`` of ``model_name``; shape ``ids.shape + (emb_vec_size,)``."""
    return lookup_eager(ids, model_name, table_id, emb_vec_size, ps_config_file)


@lookup.register_fake
def _lookup_fake(ids, model_name, table_id, emb_vec_size, ps_config_file=""):
    _check_args(ids, emb_vec_size)
    return ids.new_empty(tuple(ids.shape) + (emb_vec_size,), dtype=torch.float32)


def _no_gradient(ctx, grad):
    raise RuntimeError(
        "hps::lookup has no gradient: HPS serves embedding tables for inference and cannot train them. "
        "Train with torch.nn.Embedding / EmbeddingBag and export the tables (hierarchical_parameter_server.export_table)."
    )


def _setup_context(ctx, inputs, output):
    pass


lookup.register_autograd(_no_gradient, setup_context=_setup_context)


def _make_plain_eager_check():
    """A predicate: may a lookup of ``ids`` skip the dispatcher and run ``lookup_eager`` directly?

    Only for a plain tensor with nothing watching: not under torch.compile / dynamo, no dispatch mode (fake
    tensors, proxy tracing of make_fx / torch.export, functionalization), no torch-function mode, no
    torch.jit tracing, no functorch wrapper (vmap, grad). Everything else goes through ``hps::lookup``, so
    traces and compiled graphs always hold the op. Dispatching a custom op costs about 10 µs of Python per
    call, as much as a whole small lookup. If this torch lacks one of the checks, every call dispatches."""
    try:
        is_compiling = torch.compiler.is_compiling
        dispatch_stack = torch._C._len_torch_dispatch_stack
        function_mode = torch._C._is_torch_function_mode_enabled
        tracing_state = torch._C._get_tracing_state
        wrapped = torch._C._functorch.is_functorch_wrapped_tensor
        tensor = torch.Tensor
        is_compiling(), dispatch_stack(), function_mode(), tracing_state(), wrapped(torch.zeros(1))
    except Exception:  # pragma: no cover - depends on the torch version
        return lambda ids: False

    def plain_eager(ids):
        return (
            type(ids) is tensor
            and not ids.is_meta
            and not is_compiling()
            and dispatch_stack() == 0
            and not function_mode()
            and tracing_state() is None
            and not wrapped(ids)
        )

    return plain_eager


plain_eager = _make_plain_eager_check()


def lookup_fast(ids, model_name, table_id, emb_vec_size, ps_config_file=""):
    """``hps::lookup``, run directly when ``ids`` is a plain eager tensor (the same code the op runs),
    through the dispatcher otherwise. What the layers call."""
    if plain_eager(ids):
        return lookup_eager(ids, model_name, table_id, emb_vec_size, ps_config_file)
    return lookup(ids, model_name, table_id, emb_vec_size, ps_config_file)
