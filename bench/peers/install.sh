#!/usr/bin/env bash
# Installs what bench/peers runs, into $BENCH_TOOLS/bin (default .bench-tools/bin
# of the checkout), each only when missing or at another version:
#   minio         `go install github.com/minio/minio@$MINIO_VERSION`. MinIO tags
#                 its releases RELEASE.<date>, not semver, so the module proxy
#                 serves pseudo-versions only: this is the newest it served
#                 (commit 7aac2a2c5b7c of 2026-02-12).
#   bazel-remote  `go install` refuses it (the proxy answers 403 for the module's
#                 version list, which go install reads to check deprecation), but
#                 `go mod download` of the exact tag works: it is built in place,
#                 inside the module cache, with `go build`. v2.6.2 is the newest
#                 tag served (v2.6.3 and v2.7.0 are not).
#   peers-driver  the Go client bench/peers/driver (rebuilt every time: cheap
#                 with Go's build cache, and never stale).
# Fails loudly (exit 1, naming what failed); prints nothing else on success.
set -euo pipefail
cd "$(dirname "$0")/../.."
MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c"
BAZEL_REMOTE_VERSION="v2.6.2"
tools="${BENCH_TOOLS:-$PWD/.bench-tools}"
bin="$tools/bin"
mkdir -p "$bin"
command -v go >/dev/null || { echo "bench/peers/install.sh: go is required (it builds MinIO, bazel-remote and the driver)" >&2; exit 1; }
# Two benches may start at once: they install one after the other.
exec 9>"$tools/.install-lock"
flock 9
export GOTOOLCHAIN=local

installed() { [ -x "$bin/$1" ] && [ "$(cat "$bin/.$1-version" 2>/dev/null)" = "$2" ]; }

if ! installed minio "$MINIO_VERSION"; then
  echo "bench/peers/install.sh: go install github.com/minio/minio@$MINIO_VERSION (a few minutes the first time)" >&2
  GOBIN="$bin" GOFLAGS=-mod=mod go install "github.com/minio/minio@$MINIO_VERSION" \
    || { echo "bench/peers/install.sh: FAILED to install MinIO (github.com/minio/minio@$MINIO_VERSION)" >&2; exit 1; }
  echo "$MINIO_VERSION" > "$bin/.minio-version"
fi

if ! installed bazel-remote "$BAZEL_REMOTE_VERSION"; then
  echo "bench/peers/install.sh: go mod download github.com/buchgr/bazel-remote/v2@$BAZEL_REMOTE_VERSION, then go build in it" >&2
  dir=$(cd "${TMPDIR:-/tmp}" && GOFLAGS=-mod=mod go mod download -json "github.com/buchgr/bazel-remote/v2@$BAZEL_REMOTE_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p') \
    || { echo "bench/peers/install.sh: FAILED to download github.com/buchgr/bazel-remote/v2@$BAZEL_REMOTE_VERSION" >&2; exit 1; }
  [ -n "$dir" ] && [ -d "$dir" ] || { echo "bench/peers/install.sh: FAILED: go mod download named no folder for bazel-remote $BAZEL_REMOTE_VERSION" >&2; exit 1; }
  (cd "$dir" && GOFLAGS=-mod=mod go mod download && GOFLAGS=-mod=mod go build -o "$bin/bazel-remote" .) \
    || { echo "bench/peers/install.sh: FAILED to build bazel-remote $BAZEL_REMOTE_VERSION in $dir" >&2; exit 1; }
  echo "$BAZEL_REMOTE_VERSION" > "$bin/.bazel-remote-version"
fi

(cd bench/peers/driver && GOFLAGS=-mod=mod go build -o "$bin/peers-driver" .) \
  || { echo "bench/peers/install.sh: FAILED to build the driver (bench/peers/driver)" >&2; exit 1; }
