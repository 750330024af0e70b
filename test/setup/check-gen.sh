#!/usr/bin/env bash
# Fails when gen/ differs from what `buf generate` makes from proto/ (CI drift check).
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
echo "check-gen: gen/ matches proto/" >&2
