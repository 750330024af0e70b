#!/usr/bin/env bash
# bench/peers on request (never part of `npm run bench` or the test command):
# builds the daemon, then runs the comparison (default) or the profile mode.
#   bash bench/peers/run.sh            # daemon vs MinIO vs bazel-remote, 16 rounds
#   bash bench/peers/run.sh profile    # the daemon alone under node --cpu-prof
#   node dist/bench/peers.bench.js report FILE   # the tables of a run kept with BENCH_JSON=FILE
# Sizes: BENCH_RUNS, BENCH_MIB, BENCH_SECONDS, BENCH_IN_FLIGHT, BENCH_BAZEL_MAX_SIZE_GIB;
# BENCH_DIR (scratch folder), BENCH_JSON (keep the driver's report), BENCH_TOOLS.
set -euo pipefail
cd "$(dirname "$0")/../.."
npm run build --silent
exec node dist/bench/peers.bench.js "$@"
