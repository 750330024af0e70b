#!/usr/bin/env bash
# Regenerates the Python stubs of filestorage_client from the proto:
#   bash clients/python/generate.sh            writes clients/python/src/filestorage_client/_gen/
#   bash clients/python/generate.sh OUT_DIR    writes OUT_DIR instead (test/setup/check-gen.sh diffs it)
# Uses the pinned grpcio-tools of the test venv (.test-tools/venv, made by
# test/setup/install-tools.sh) so every machine generates byte-identical code.
# protoc names the stubs' imports after the proto path (filestorage.v1); the
# package ships them flat under filestorage_client._gen, so that import is
# rewritten to a relative one.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$root/clients/python/src/filestorage_client/_gen}"
python="$root/.test-tools/venv/bin/python"
if ! "$python" -c "import grpc_tools.protoc" 2>/dev/null; then
  echo "generate.sh: $python with grpcio-tools is missing: run 'bash test/setup/install-tools.sh' first" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$root/proto" && "$python" -m grpc_tools.protoc -I . \
  --python_out="$tmp" --pyi_out="$tmp" --grpc_python_out="$tmp" \
  filestorage/v1/file_storage.proto)
mkdir -p "$out"
rm -f "$out"/file_storage_pb2*.py "$out"/file_storage_pb2*.pyi
for f in file_storage_pb2.py file_storage_pb2.pyi file_storage_pb2_grpc.py; do
  sed -e 's/^from filestorage\.v1 import file_storage_pb2 as /from . import file_storage_pb2 as /' \
    "$tmp/filestorage/v1/$f" > "$out/$f"
done
cat > "$out/__init__.py" <<'PY'
"""Generated from proto/filestorage/v1/file_storage.proto by clients/python/generate.sh. Do not edit."""
PY
if grep -q "^from filestorage\.v1 " "$out"/*.py; then
  echo "generate.sh: an import of filestorage.v1 was left in $out: the rewrite in generate.sh needs updating" >&2
  exit 1
fi
