#!/usr/bin/env bash
# Installs the real peers the test suite runs against, when missing:
#   fake-gcs-server (pinned) into .test-tools/bin via `go install`
#   redis-server from Debian's packages (root) or PyPI's bundled wheel.
# Fails loudly: the suite never skips these tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
FAKE_GCS_VERSION="v1.56.1"
bin="$PWD/.test-tools/bin"
mkdir -p "$bin"

if [ ! -x "$bin/fake-gcs-server" ] || [ "$(cat "$bin/.fake-gcs-version" 2>/dev/null)" != "$FAKE_GCS_VERSION" ]; then
  command -v go >/dev/null || { echo "install-tools: go is required to install fake-gcs-server" >&2; exit 1; }
  echo "install-tools: go install fake-gcs-server@$FAKE_GCS_VERSION" >&2
  GOBIN="$bin" GOFLAGS=-mod=mod go install "github.com/fsouza/fake-gcs-server@$FAKE_GCS_VERSION"
  echo "$FAKE_GCS_VERSION" > "$bin/.fake-gcs-version"
fi

if ! command -v redis-server >/dev/null && [ ! -x "$bin/redis-server" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "install-tools: apt-get install redis-server" >&2
    (apt-get install -y -qq redis-server >/dev/null 2>&1) || { apt-get update -qq >/dev/null && apt-get install -y -qq redis-server >/dev/null; }
  else
    echo "install-tools: redis-server is missing; install it (apt-get install redis-server)" >&2
    exit 1
  fi
fi
echo "install-tools: ok" >&2
