#!/usr/bin/env bash
# Regenerates the Go and Python code of api/federation/v1/federation.proto.
# Tools (the versions the committed code was made with):
#   protoc 3.21.12 (Debian: apt-get install -y protobuf-compiler)
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install connectrpc.com/connect/cmd/protoc-gen-connect-go@v1.21.1
# With -check it regenerates into a temporary directory and fails if the
# committed code differs.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.
if [ "${1:-}" = "-check" ]; then out=$(mktemp -d); trap 'rm -rf "$out"' EXIT; fi
PATH="$(go env GOPATH)/bin:$PATH"
mkdir -p "$out/api/federation/v1" "$out/examples/python"
protoc -I api \
  --go_out="$out/api" --go_opt=paths=source_relative \
  --connect-go_out="$out/api" --connect-go_opt=paths=source_relative \
  --python_out="$out/examples/python" \
  federation/v1/federation.proto
if [ "$out" != . ]; then
  stale=$(diff -r -q api/federation "$out/api/federation" | grep -v -e '\.proto$' -e 'doc\.go$' || true)
  if [ -n "$stale" ]; then echo "$stale"; echo "api: generated Go is stale: run api/generate.sh"; exit 1; fi
  diff -q examples/python/federation/v1/federation_pb2.py "$out/examples/python/federation/v1/federation_pb2.py" || { echo "api: generated Python is stale: run api/generate.sh"; exit 1; }
  echo "api: generated code is up to date"
fi
