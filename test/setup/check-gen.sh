#!/usr/bin/env bash
# Fails when the generated code differs from what `npm run generate` makes
# from proto/ (CI drift check): gen/ (TypeScript), clients/go/gen/ (Go) and the
# Python client's stubs. The Go stubs need the pinned protoc-gen-go plugins in
# .test-tools/bin, the Python ones the pinned grpcio-tools of .test-tools/venv
# (both from test/setup/install-tools.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- Go client stubs: buf.gen.yaml runs these local plugins ---
for plugin in protoc-gen-go protoc-gen-go-grpc; do
  if [ ! -x ".test-tools/bin/$plugin" ]; then
    echo "check-gen: .test-tools/bin/$plugin is missing (it generates clients/go/gen): run 'bash test/setup/install-tools.sh'" >&2
    exit 1
  fi
done

PATH="$PWD/node_modules/.bin:$PATH" buf generate -o "$tmp"
status=0
for out in gen clients/go/gen; do
  if ! diff -r "$tmp/$out" "$out" >/dev/null; then
    echo "check-gen: $out/ is out of date with proto/: run 'npm run generate' and commit $out/" >&2
    diff -r "$tmp/$out" "$out" | head -20 | cut -c1-300 >&2
    status=1
  fi
done

# --- Python client stubs ---
py_gen=clients/python/src/filestorage_client/_gen
bash clients/python/generate.sh "$tmp/py" || { echo "check-gen: cannot regenerate $py_gen (see above)" >&2; exit 1; }
if ! diff -r -x __pycache__ "$tmp/py" "$py_gen" >/dev/null; then
  echo "check-gen: $py_gen is out of date with proto/: run 'npm run generate' and commit it" >&2
  diff -r -x __pycache__ "$tmp/py" "$py_gen" | head -20 | cut -c1-300 >&2
  status=1
fi
[ "$status" = 0 ] && echo "check-gen: gen/, clients/go/gen/ and $py_gen match proto/" >&2
exit "$status"
