#!/usr/bin/env bash
# Regenerates Sources/RefineryCluster/Generated/refinery.pb.swift from proto/refinery.proto.
# Needs protoc (Debian: protobuf-compiler) and protoc-gen-swift of the swift-protobuf version
# Package.swift names (build it once: `swift build -c release --product protoc-gen-swift` in a
# checkout of apple/swift-protobuf at that tag, then pass its path as PROTOC_GEN_SWIFT).
# The generated file is committed: neither CI nor users need protoc.
set -euo pipefail
cd "$(dirname "$0")/.."
PLUGIN=${PROTOC_GEN_SWIFT:-$(command -v protoc-gen-swift || true)}
if [ -z "$PLUGIN" ] || [ ! -x "$PLUGIN" ]; then
  echo "protoc-gen-swift not found: set PROTOC_GEN_SWIFT to its path" >&2
  exit 2
fi
mkdir -p Sources/RefineryCluster/Generated
protoc --plugin=protoc-gen-swift="$PLUGIN" --swift_opt=Visibility=Public \
  --swift_out=Sources/RefineryCluster/Generated -I proto proto/refinery.proto
echo "wrote Sources/RefineryCluster/Generated/refinery.pb.swift"
