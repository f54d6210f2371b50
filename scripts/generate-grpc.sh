#!/usr/bin/env bash
# Regenerates the committed Swift code of `hps serve`'s gRPC protocol (Sources/HPSServer/Generated) from
# Protos/grpc_service.proto. Run it only when that file changes; builds and CI never run it.
#
# Needs, outside the repository:
#   - protoc: Debian's protobuf-compiler (apt-get install protobuf-compiler);
#   - protoc-gen-swift (apple/swift-protobuf 1.39.0, as Package.swift pins) and protoc-gen-grpc-swift-2
#     (grpc/grpc-swift-protobuf 2.4.1, for grpc-swift-2 2.4.3 as Package.swift pins), built in a scratch package
#     of their own, e.g.:
#       mkdir -p /work/scratch-protoc && cd /work/scratch-protoc  # a Package.swift depending on
#       #   swift-protobuf exact 1.39.0, grpc-swift-protobuf exact 2.4.1, grpc-swift-2 exact 2.4.3
#       swift build --product protoc-gen-swift && swift build --product protoc-gen-grpc-swift-2
#     (the first build takes several minutes; that is why the generated code is committed).
# PLUGINS names the folder holding both plugins (default /work/scratch-protoc/.build/debug).
#
# Protos/grpc_service.proto itself is written by scripts/triton-proto-subset.py from tritonclient's
# descriptors (Triton's own definitions, the subset the server answers).
set -euo pipefail
cd "$(dirname "$0")/.."
plugins="${PLUGINS:-/work/scratch-protoc/.build/debug}"
for p in protoc "$plugins/protoc-gen-swift" "$plugins/protoc-gen-grpc-swift-2"; do
  command -v "$p" >/dev/null || { echo "generate-grpc: $p not found (see the comments of this script)" >&2; exit 1; }
done
out=Sources/HPSServer/Generated
mkdir -p "$out"
protoc --proto_path=Protos \
  --plugin=protoc-gen-swift="$plugins/protoc-gen-swift" \
  --plugin=protoc-gen-grpc-swift-2="$plugins/protoc-gen-grpc-swift-2" \
  --swift_out="$out" --swift_opt=Visibility=Internal \
  --grpc-swift-2_out="$out" --grpc-swift-2_opt=Visibility=Internal,Server=true,Client=false \
  grpc_service.proto
# The service code names grpc-swift-protobuf's coders; use this target's own (ProtobufCoding.swift), so the
# package does not depend on grpc-swift-protobuf, whose build plugins put protoc's C++ sources into every
# `swift build --build-tests`.
sed -i -e '/^import GRPCProtobuf$/d' \
  -e 's/GRPCProtobuf\.ProtobufSerializer/ProtobufMessageSerializer/g' \
  -e 's/GRPCProtobuf\.ProtobufDeserializer/ProtobufMessageDeserializer/g' "$out/grpc_service.grpc.swift"
if grep -n GRPCProtobuf "$out/grpc_service.grpc.swift"; then
  echo "generate-grpc: the service code still names GRPCProtobuf (above); adapt the rewrite" >&2
  exit 1
fi
echo "generate-grpc: wrote $(ls "$out" | tr '\n' ' ')"
