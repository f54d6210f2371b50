#!/usr/bin/env python3
"""Writes Protos/grpc_service.proto: the subset of Triton's KServe v2 gRPC protocol that `hps serve` answers.

The definitions are read from the descriptors that tritonclient (PyPI, tritonclient[grpc]) ships, which are
compiled from Triton's grpc_service.proto and model_config.proto (triton-inference-server/common). Names,
packages and field numbers are kept as they are there, so the wire format is Triton's; messages, fields and
RPCs that the server does not use are left out (a peer skips unknown fields, and an RPC that is not listed
answers UNIMPLEMENTED).

    .venv/bin/python scripts/triton-proto-subset.py > Protos/grpc_service.proto
"""
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FieldDescriptor as F
from importlib.metadata import version
from tritonclient.grpc import model_config_pb2, service_pb2

RPCS = [
    "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer", "ModelConfig",
    "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload",
]
# Messages of model_config.proto that ModelConfigResponse needs, and the fields of each that are kept
# (None: all of them).
MODEL_CONFIG = {
    "DataType": None,
    "ModelConfig": ["name", "platform", "backend", "version_policy", "max_batch_size", "input", "output",
                    "instance_group", "parameters"],
    "ModelVersionPolicy": None,
    "ModelInput": ["name", "data_type", "dims"],
    "ModelOutput": ["name", "data_type", "dims"],
    "ModelInstanceGroup": ["name", "kind", "count", "gpus"],
    "ModelParameter": None,
}
SCALARS = {
    F.TYPE_DOUBLE: "double", F.TYPE_FLOAT: "float", F.TYPE_INT64: "int64", F.TYPE_UINT64: "uint64",
    F.TYPE_INT32: "int32", F.TYPE_UINT32: "uint32", F.TYPE_BOOL: "bool", F.TYPE_STRING: "string",
    F.TYPE_BYTES: "bytes",
}


def file_proto(module):
    fd = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(fd)
    return fd


def type_name(field):
    if field.type in (F.TYPE_MESSAGE, F.TYPE_ENUM):
        return field.type_name.removeprefix(".inference.")
    return SCALARS[field.type]


def emit_enum(enum, indent, out):
    out.append(f"{indent}enum {enum.name} {{")
    for value in enum.value:
        out.append(f"{indent}  {value.name} = {value.number};")
    out.append(f"{indent}}}")


def emit_message(msg, keep, indent, out, prefix=""):
    full = prefix + msg.name
    fields = [f for f in msg.field if keep is None or f.name in keep]
    used = {f.type_name.split(".")[-1] for f in fields}
    entries = {n.name: n for n in msg.nested_type if n.options.map_entry}
    out.append(f"{indent}message {msg.name} {{")
    for enum in msg.enum_type:
        if enum.name in used:
            emit_enum(enum, indent + "  ", out)
    for nested in msg.nested_type:
        if not nested.options.map_entry and nested.name in used:
            emit_message(nested, None, indent + "  ", out, full + ".")
    seen_oneofs = set()
    for f in fields:
        if f.HasField("oneof_index"):
            if f.oneof_index in seen_oneofs:
                continue
            seen_oneofs.add(f.oneof_index)
            out.append(f"{indent}  oneof {msg.oneof_decl[f.oneof_index].name} {{")
            for g in fields:
                if g.HasField("oneof_index") and g.oneof_index == f.oneof_index:
                    out.append(f"{indent}    {type_name(g)} {g.name} = {g.number};")
            out.append(f"{indent}  }}")
            continue
        entry = entries.get(f.type_name.split(".")[-1]) if f.label == F.LABEL_REPEATED else None
        if entry is not None:
            key, value = entry.field
            out.append(f"{indent}  map<{type_name(key)}, {type_name(value)}> {f.name} = {f.number};")
        else:
            label = "repeated " if f.label == F.LABEL_REPEATED else ""
            out.append(f"{indent}  {label}{type_name(f)} {f.name} = {f.number};")
    out.append(f"{indent}}}")


def closure(fd, roots):
    """The top-level messages of `fd` that `roots` need, in the file's order."""
    by_name = {m.name: m for m in fd.message_type}
    needed, stack = set(), list(roots)
    while stack:
        name = stack.pop()
        if name in needed or name not in by_name:
            continue
        needed.add(name)
        def walk(msg):
            for f in msg.field:
                if f.type == F.TYPE_MESSAGE:
                    stack.append(f.type_name.removeprefix(".inference.").split(".")[0])
            for n in msg.nested_type:
                walk(n)
        walk(by_name[name])
    return [m for m in fd.message_type if m.name in needed]


def main():
    service_fd, config_fd = file_proto(service_pb2), file_proto(model_config_pb2)
    service = next(s for s in service_fd.service if s.name == "GRPCInferenceService")
    methods = [m for m in service.method if m.name in RPCS]
    roots = set()
    for m in methods:
        roots.add(m.input_type.removeprefix(".inference."))
        roots.add(m.output_type.removeprefix(".inference."))
    out = [
        "// The subset of Triton's KServe v2 gRPC protocol that `hps serve` answers, written by",
        "// scripts/triton-proto-subset.py from the descriptors of tritonclient " + version("tritonclient") + " (PyPI), which are",
        "// compiled from Triton's grpc_service.proto and model_config.proto (triton-inference-server/common,",
        "// BSD-3-Clause). Package, names and field numbers are Triton's; unused messages, fields and RPCs are left out.",
        "// Regenerate the Swift code with scripts/generate-grpc.sh.",
        'syntax = "proto3";',
        "",
        "package inference;",
        "",
        "service GRPCInferenceService {",
    ]
    for m in methods:
        out.append(f"  rpc {m.name}({m.input_type.removeprefix('.inference.')}) returns ({m.output_type.removeprefix('.inference.')}) {{}}")
    out.append("}")
    for msg in closure(service_fd, roots):
        out.append("")
        emit_message(msg, None, "", out)
    for enum in config_fd.enum_type:
        if enum.name in MODEL_CONFIG:
            out.append("")
            emit_enum(enum, "", out)
    for msg in config_fd.message_type:
        if msg.name in MODEL_CONFIG:
            out.append("")
            emit_message(msg, MODEL_CONFIG[msg.name], "", out)
    print("\n".join(out))


if __name__ == "__main__":
    main()
