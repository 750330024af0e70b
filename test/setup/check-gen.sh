#!/usr/bin/env bash
# Fails when gen/ or clients/go/gen/ differs from what `buf generate` makes
# from proto/ (CI drift check).
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
    diff -r "$tmp/$out" "$out" | head -20 >&2
    status=1
  fi
done
[ "$status" = 0 ] && echo "check-gen: gen/ and clients/go/gen/ match proto/" >&2
exit "$status"
