#!/usr/bin/env bash
# Makes the Python venv bench/legacy runs in, $BENCH_TOOLS/legacy-venv (default
# .bench-tools/legacy-venv of the checkout), when missing or stale:
#   the Python client of this checkout (clients/python, with [crc32c]), installed from a
#     copy (pip's in-tree build would leave build/ and *.egg-info in the checkout), with
#     pinned grpcio, protobuf and google-crc32c (the versions test/setup/install-tools.sh pins);
#   the old component: aiecs==2.2.0 with --no-deps (its package imports pull ~100
#     dependencies; the driver loads its file_storage module alone, as the tests do) and
#     aiofiles, the one library that module needs.
# The venv is rebuilt when a pin or any file of clients/python changes.
# Fails loudly (exit 1, naming what failed).
set -euo pipefail
cd "$(dirname "$0")/../.."
GRPCIO_VERSION="1.85.1"
PROTOBUF_VERSION="7.36.2"
GOOGLE_CRC32C_VERSION="1.9.0"
AIOFILES_VERSION="25.1.0"
AIECS_VERSION="2.2.0"
tools="${BENCH_TOOLS:-$PWD/.bench-tools}"
venv="$tools/legacy-venv"
mkdir -p "$tools"
command -v python3 >/dev/null || { echo "bench/legacy/install.sh: python3 is required" >&2; exit 1; }
exec 9>"$tools/.install-lock"
flock 9

pins="grpcio==$GRPCIO_VERSION protobuf==$PROTOBUF_VERSION google-crc32c==$GOOGLE_CRC32C_VERSION aiofiles==$AIOFILES_VERSION"
client_sum=$(find clients/python -type f \( -path '*/__pycache__/*' -o -path '*/build/*' -o -path '*.egg-info/*' \) -prune -o -type f -print \
  | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
want="$pins aiecs==$AIECS_VERSION client $client_sum"
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.installed" 2>/dev/null)" = "$want" ]; then exit 0; fi

echo "bench/legacy/install.sh: python3 -m venv $venv; pip install ./clients/python[crc32c] $pins; pip install --no-deps aiecs==$AIECS_VERSION" >&2
rm -rf "$venv"
python3 -m venv "$venv" || { echo "bench/legacy/install.sh: FAILED to create the venv $venv" >&2; exit 1; }
pkg=$(mktemp -d)
trap 'rm -rf "$pkg"' EXIT
cp -r clients/python/. "$pkg/"
rm -rf "$pkg/build" "$pkg"/src/*.egg-info
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" "$pkg[crc32c]" $pins \
  || { echo "bench/legacy/install.sh: FAILED to pip install clients/python[crc32c] $pins" >&2; exit 1; }
"${pip[@]}" --no-deps "aiecs==$AIECS_VERSION" \
  || { echo "bench/legacy/install.sh: FAILED to pip install --no-deps aiecs==$AIECS_VERSION (the old component)" >&2; exit 1; }
echo "$want" > "$venv/.installed"
