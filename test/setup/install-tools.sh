#!/usr/bin/env bash
# Installs the real peers the test suite runs against, when missing:
#   fake-gcs-server, grpcurl and grpc-health-probe (pinned) into
#     .test-tools/bin via `go install`
#   protoc-gen-go and protoc-gen-go-grpc (pinned, `go install`): buf.gen.yaml
#     runs them for the Go client's stubs; then the Go client's modules
#     (clients/go/go.sum) are downloaded and built once, so its tests run
#     offline (GOPROXY=off) and fast
#   a Python venv at .test-tools/venv with pinned grpcio, grpcio-tools and
#     protobuf (the polyglot tests generate Python stubs with it, and
#     clients/python/generate.sh the committed stubs of filestorage_client)
#   a wheelhouse at .test-tools/python-wheels (pinned) from which the Python
#     client's test (test/process/python-client.test.ts) installs
#     clients/python and pytest into a fresh venv with pip --no-index; it also
#     holds the old component (aiecs, installed --no-deps) the migration
#     tests run to write their fixtures, and google-cloud-storage (the old
#     component's GCS backend and the migration's bucket reader, against
#     fake-gcs-server)
#   redis-server from Debian's packages (root) or PyPI's bundled wheel.
#   openssl (Debian's package, root): the TLS tests make their certificates with it.
#   systemd-analyze (Debian's systemd package, root): checks the systemd unit in deploy/.
# Each pinned tool is skipped when its version marker matches. Several jest
# runs may start at once: a lock makes them install one after another.
# Fails loudly: the suite never skips these tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
FAKE_GCS_VERSION="v1.56.1"
GRPCURL_VERSION="v1.9.4"
HEALTH_PROBE_VERSION="v0.4.62"
GRPCIO_VERSION="1.85.1"
GRPCIO_TOOLS_VERSION="1.85.1"
PROTOBUF_VERSION="7.36.2"
SETUPTOOLS_VERSION="84.2.1"
PYTEST_VERSION="9.2.0"
PYTEST_ASYNCIO_VERSION="1.5.0"
GOOGLE_CRC32C_VERSION="1.9.0"
AIOFILES_VERSION="25.1.0"
AIECS_VERSION="2.2.0"
GOOGLE_CLOUD_STORAGE_VERSION="3.17.1"
bin="$PWD/.test-tools/bin"
mkdir -p "$bin"
exec 9>"$PWD/.test-tools/.install-lock"
flock 9

# go_install NAME MODULE_PATH VERSION: installs $bin/NAME unless the marker
# $bin/.NAME-version already names VERSION.
go_install() {
  local name="$1" module="$2" version="$3"
  if [ -x "$bin/$name" ] && [ "$(cat "$bin/.$name-version" 2>/dev/null)" = "$version" ]; then return 0; fi
  command -v go >/dev/null || { echo "install-tools: go is required to install $name" >&2; exit 1; }
  echo "install-tools: go install $module@$version" >&2
  GOBIN="$bin" GOFLAGS=-mod=mod go install "$module@$version" \
    || { echo "install-tools: FAILED to install $name ($module@$version)" >&2; exit 1; }
  echo "$version" > "$bin/.$name-version"
}

# Markers are .NAME-version; fake-gcs-server's used to be .fake-gcs-version.
if [ -f "$bin/.fake-gcs-version" ] && [ ! -f "$bin/.fake-gcs-server-version" ]; then
  mv "$bin/.fake-gcs-version" "$bin/.fake-gcs-server-version"
fi
go_install fake-gcs-server github.com/fsouza/fake-gcs-server "$FAKE_GCS_VERSION"
go_install grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl "$GRPCURL_VERSION"
go_install grpc-health-probe github.com/grpc-ecosystem/grpc-health-probe "$HEALTH_PROBE_VERSION"

# --- Go client (clients/go) ---
# The stub generators buf.gen.yaml runs, then the module's dependencies:
# downloaded into the module cache and compiled into the build cache once per
# go.sum, so test/process/go-client.test.ts runs offline and within its time.
PROTOC_GEN_GO_VERSION="v1.36.12"
PROTOC_GEN_GO_GRPC_VERSION="v1.6.2"
go_install protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
go_install protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"
go_client_modules() {
  local marker="$PWD/.test-tools/.go-client-modules" sum
  command -v go >/dev/null || { echo "install-tools: go is required for the Go client's tests (clients/go)" >&2; exit 1; }
  sum="$(sha256sum clients/go/go.sum | cut -d' ' -f1) $(go env GOVERSION)"
  # The marker alone would miss a module cache cleaned since.
  if [ "$(cat "$marker" 2>/dev/null)" = "$sum" ] \
    && (cd clients/go && GOPROXY=off GOFLAGS=-mod=mod GOTOOLCHAIN=local go list -deps -test ./... >/dev/null 2>&1); then
    return 0
  fi
  echo "install-tools: go mod download and build in clients/go" >&2
  local out
  out=$(mktemp -d)
  (cd clients/go && export GOFLAGS=-mod=mod GOTOOLCHAIN=local && go mod download && go build ./... && go vet ./... && go test -c -o "$out/client.test" .) \
    || { rm -rf "$out"; echo "install-tools: FAILED to download or build the Go client's modules (clients/go)" >&2; exit 1; }
  rm -rf "$out"
  echo "$sum" > "$marker"
}
go_client_modules
# jq reads grpcurl's JSON in test/polyglot/scenario-grpcurl.sh.
if ! command -v jq >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "install-tools: apt-get install jq" >&2
    (apt-get install -y -qq jq >/dev/null 2>&1) || { apt-get update -qq >/dev/null && apt-get install -y -qq jq >/dev/null; }
  fi
  command -v jq >/dev/null || { echo "install-tools: jq is missing; the grpcurl scenario reads JSON with it (apt-get install jq)" >&2; exit 1; }
fi

venv="$PWD/.test-tools/venv"
venv_pins="grpcio==$GRPCIO_VERSION grpcio-tools==$GRPCIO_TOOLS_VERSION protobuf==$PROTOBUF_VERSION"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.pins" 2>/dev/null)" != "$venv_pins" ]; then
  command -v python3 >/dev/null || { echo "install-tools: python3 is required for the Python client tests" >&2; exit 1; }
  echo "install-tools: python3 -m venv .test-tools/venv; pip install $venv_pins" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" || { echo "install-tools: FAILED to create the venv $venv" >&2; exit 1; }
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $venv_pins \
    || { echo "install-tools: FAILED to pip install $venv_pins" >&2; exit 1; }
  echo "$venv_pins" > "$venv/.pins"
fi

wheels="$PWD/.test-tools/python-wheels"
wheel_pins="grpcio==$GRPCIO_VERSION protobuf==$PROTOBUF_VERSION setuptools==$SETUPTOOLS_VERSION pytest==$PYTEST_VERSION pytest-asyncio==$PYTEST_ASYNCIO_VERSION google-crc32c==$GOOGLE_CRC32C_VERSION aiofiles==$AIOFILES_VERSION google-cloud-storage==$GOOGLE_CLOUD_STORAGE_VERSION"
if [ "$(cat "$wheels/.pins" 2>/dev/null)" != "$wheel_pins aiecs==$AIECS_VERSION" ]; then
  echo "install-tools: pip download $wheel_pins aiecs==$AIECS_VERSION (no deps) into .test-tools/python-wheels" >&2
  rm -rf "$wheels"
  mkdir -p "$wheels"
  "$venv/bin/python" -m pip download --quiet --disable-pip-version-check -d "$wheels" $wheel_pins \
    || { echo "install-tools: FAILED to download the Python client's test wheels ($wheel_pins)" >&2; exit 1; }
  "$venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps -d "$wheels" "aiecs==$AIECS_VERSION" \
    || { echo "install-tools: FAILED to download aiecs==$AIECS_VERSION (the old component)" >&2; exit 1; }
  echo "$wheel_pins aiecs==$AIECS_VERSION" > "$wheels/.pins"
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
if ! command -v openssl >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "install-tools: apt-get install openssl" >&2
    (apt-get install -y -qq openssl >/dev/null 2>&1) || { apt-get update -qq >/dev/null && apt-get install -y -qq openssl >/dev/null; }
  fi
  command -v openssl >/dev/null || {
    echo "install-tools: openssl is missing; the TLS tests generate their certificates with it (apt-get install openssl)" >&2
    exit 1
  }
fi
# systemd-analyze (Debian's systemd package) checks deploy/filestorage.service
# (test/process/deploy-files.test.ts); it runs offline, no systemd needed.
if ! command -v systemd-analyze >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "install-tools: apt-get install systemd (for systemd-analyze)" >&2
    (apt-get install -y -qq systemd >/dev/null 2>&1) || { apt-get update -qq >/dev/null && apt-get install -y -qq systemd >/dev/null; }
  fi
  command -v systemd-analyze >/dev/null || {
    echo "install-tools: systemd-analyze is missing; the deployment test verifies the unit file with it (apt-get install systemd)" >&2
    exit 1
  }
fi
echo "install-tools: ok" >&2
