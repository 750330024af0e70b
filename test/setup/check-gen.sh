#!/usr/bin/env bash
# Fails when gen/ (TypeScript) or the Python client's stubs differ from what
# `npm run generate` makes from proto/ (CI drift check). The Python stubs need
# the pinned grpcio-tools of .test-tools/venv (test/setup/install-tools.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
PATH="$PWD/node_modules/.bin:$PATH" buf generate -o "$tmp"
if ! diff -r "$tmp/gen" gen >/dev/null; then
  echo "check-gen: gen/ is out of date with proto/: run 'npm run generate' and commit gen/" >&2
  diff -r "$tmp/gen" gen | head -20 >&2
  exit 1
fi
py_gen=clients/python/src/filestorage_client/_gen
bash clients/python/generate.sh "$tmp/py" || { echo "check-gen: cannot regenerate $py_gen (see above)" >&2; exit 1; }
if ! diff -r -x __pycache__ "$tmp/py" "$py_gen" >/dev/null; then
  echo "check-gen: $py_gen is out of date with proto/: run 'npm run generate' and commit it" >&2
  diff -r -x __pycache__ "$tmp/py" "$py_gen" | head -20 >&2
  exit 1
fi
echo "check-gen: gen/ and $py_gen match proto/" >&2
