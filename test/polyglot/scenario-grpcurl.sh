#!/usr/bin/env bash
# The shared client scenario (issue 11; the same ten steps every client runs)
# from the shell: grpcurl against the daemon's server reflection alone, no
# proto file, plaintext. Data travels base64 in grpcurl's JSON; the streamed
# upload is a JSON stream on stdin (header, 64 KiB chunks, trailer).
#
#   FILESTORAGE_ADDRESS=127.0.0.1:50051 SCENARIO_PREFIX=sh/1/ bash test/polyglot/scenario-grpcurl.sh
#
# Needs grpcurl (GRPCURL, default .test-tools/bin/grpcurl, which
# test/setup/install-tools.sh installs), jq, coreutils (base64, sha256sum,
# split, dd), cmp and python3 (stdlib only, to make the stream's bytes). Exits 0 only when every
# step held; otherwise prints the step and what differed, and exits 1.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
addr="${FILESTORAGE_ADDRESS:?set FILESTORAGE_ADDRESS to the daemon host:port}"
P="${SCENARIO_PREFIX:-grpcurl/$$/}"
grpcurl="${GRPCURL:-$root/.test-tools/bin/grpcurl}"
svc=filestorage.v1.FileStorageService
for tool in "$grpcurl" jq base64 sha256sum split dd cmp python3; do
  command -v "$tool" >/dev/null || { echo "scenario-grpcurl: $tool is missing (test/setup/install-tools.sh installs grpcurl)" >&2; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
step="setup"

fail() {
  echo "scenario-grpcurl: FAILED at step $step: $*" >&2
  exit 1
}

# rpc METHOD JSON: the response on stdout; a failed call fails the step.
rpc() {
  "$grpcurl" -plaintext -emit-defaults -max-time 60 -d "$2" "$addr" "$svc/$1" 2>"$tmp/err" \
    || fail "$1 $(head -c 300 <<<"$2") failed: $(cat "$tmp/err")"
}

# rpc_fails CODE METHOD JSON: the call must fail with that gRPC code.
rpc_fails() {
  if "$grpcurl" -plaintext -max-time 60 -d "$3" "$addr" "$svc/$2" >"$tmp/out" 2>"$tmp/err"; then
    fail "$2 $3 succeeded ($(tr -d '\n' <"$tmp/out")), want $1"
  fi
  grep -q "Code: $1\$" "$tmp/err" || fail "$2 $3 gave $(tr '\n' ' ' <"$tmp/err"), want $1"
}

# holds WHAT FILTER JSON: jq FILTER over JSON must print true.
holds() {
  [ "$(jq -r "$2" <<<"$3")" = "true" ] || fail "$1: got $(jq -c . <<<"$3" | head -c 600)"
}

b64() { base64 -w0; }
# chunks: the data of every chunk message of a RetrieveStream answer on stdin.
chunks() { jq -r '.chunk // empty' | while read -r c; do printf '%s' "$c" | base64 -d; done; }
done_step() { echo "scenario-grpcurl: step $step held"; }

step="1 text with metadata"
text='héllo wörld'
text_crc32c=3171989910 # CRC32C (Castagnoli) of its 13 UTF-8 bytes
text_store=$(jq -nc --arg k "${P}text" --arg d "$(printf '%s' "$text" | b64)" \
  '{key: $k, data: $d, kind: "DATA_KIND_TEXT", contentType: "text/plain; charset=utf-8",
    metadata: {tags: ["a", "b"], n: 3, nested: {x: true}}}')
rpc Store "$text_store" >/dev/null
got=$(rpc Retrieve "{\"key\": \"${P}text\"}")
[ "$(jq -r .data <<<"$got" | base64 -d)" = "$text" ] || fail "retrieve returned $(jq -c . <<<"$got")"
stat=$(rpc Stat "{\"key\": \"${P}text\"}")
holds "stat" ".object | .kind == \"DATA_KIND_TEXT\" and .size == \"13\"
  and .metadata == {tags: [\"a\", \"b\"], n: 3, nested: {x: true}}
  and .contentType == \"text/plain; charset=utf-8\" and (.generation | tonumber) > 0
  and .crc32c == $text_crc32c" "$stat"
done_step

step="2 bytes and empty bytes"
png=$(printf '\x89PNG\r\n\x1a\n' | b64)
rpc Store "{\"key\": \"${P}bytes\", \"data\": \"$png\", \"kind\": \"DATA_KIND_BYTES\"}" >/dev/null
got=$(rpc Retrieve "{\"key\": \"${P}bytes\"}")
holds "retrieve of the PNG signature" ".data == \"$png\" and .object.kind == \"DATA_KIND_BYTES\"" "$got"
rpc Store "{\"key\": \"${P}empty\", \"data\": \"\", \"kind\": \"DATA_KIND_BYTES\"}" >/dev/null
got=$(rpc Retrieve "{\"key\": \"${P}empty\"}")
holds "retrieve of the empty object" '.data == "" and .object.kind == "DATA_KIND_BYTES" and .object.size == "0"' "$got"
done_step

step="3 json and a json-looking string"
doc='{"score": 0.93, "items": [1, "two", null], "ok": false}'
rpc Store "{\"key\": \"${P}json\", \"data\": \"$(printf '%s' "$doc" | b64)\", \"kind\": \"DATA_KIND_JSON\"}" >/dev/null
got=$(rpc Retrieve "{\"key\": \"${P}json\"}")
holds "retrieve of the JSON document" '.object.kind == "DATA_KIND_JSON"' "$got"
holds "the retrieved JSON" ". == $doc" "$(jq -r .data <<<"$got" | base64 -d)"
looking='{"not": "json"}'
rpc Store "{\"key\": \"${P}json-looking\", \"data\": \"$(printf '%s' "$looking" | b64)\", \"kind\": \"DATA_KIND_TEXT\"}" >/dev/null
got=$(rpc Retrieve "{\"key\": \"${P}json-looking\"}")
holds "the JSON-looking string's kind" '.object.kind == "DATA_KIND_TEXT"' "$got"
[ "$(jq -r .data <<<"$got" | base64 -d)" = "$looking" ] || fail "the JSON-looking string came back as $(jq -c . <<<"$got")"
done_step

step="4 exists and a missing key"
holds "exists of the text key" '.exists == true' "$(rpc Exists "{\"key\": \"${P}text\"}")"
holds "exists of a missing key" '.exists == false' "$(rpc Exists "{\"key\": \"${P}missing\"}")"
# The raw API's "nothing there" is NOT_FOUND (clients turn it into null).
rpc_fails NotFound Retrieve "{\"key\": \"${P}missing\"}"
done_step

step="5 list keys and pages"
want=$(jq -nc --arg p "$P" '[$p + "bytes", $p + "empty", $p + "json", $p + "json-looking", $p + "text"]')
holds "keys under the prefix" ".keys == $want and .nextPageToken == \"\"" "$(rpc ListKeys "{\"prefix\": \"$P\"}")"
page=$(rpc ListKeys "{\"prefix\": \"$P\", \"limit\": 2}")
holds "the first page of 2" '(.keys | length) == 2 and .nextPageToken != ""' "$page"
all="[]"
pages=0
token=""
while :; do
  page=$(rpc ListKeys "$(jq -nc --arg p "$P" --arg t "$token" '{prefix: $p, limit: 2, pageToken: $t}')")
  all=$(jq -c --argjson page "$page" '. + $page.keys' <<<"$all")
  pages=$((pages + 1))
  token=$(jq -r .nextPageToken <<<"$page")
  [ -n "$token" ] || break
  [ "$pages" -lt 10 ] || fail "more than 10 pages of 2 for 5 keys"
done
holds "every page of 2 ($pages pages)" ". == $want and $pages == 3" "$all"
done_step

step="6 streamed upload and ranged download"
size=$((3 * 1024 * 1024 + 17))
stream_crc32c=1008980960 # CRC32C of those bytes; a wrong one would be DATA_LOSS
python3 -c '
import sys
n = int(sys.argv[1])
sys.stdout.buffer.write(bytes((i * 31 + 7) % 251 for i in range(n)))' "$size" >"$tmp/data"
mkdir "$tmp/pieces"
split -b 65536 -a 4 "$tmp/data" "$tmp/pieces/"
{
  jq -nc --arg k "${P}stream" --arg s "$size" '{header: {key: $k, kind: "DATA_KIND_BYTES", size: $s}}'
  for piece in "$tmp/pieces/"*; do printf '{"chunk": "%s"}\n' "$(b64 <"$piece")"; done
  jq -nc --arg s "$size" "{trailer: {crc32c: $stream_crc32c, size: \$s}}"
} >"$tmp/upload.json"
"$grpcurl" -plaintext -emit-defaults -max-time 60 -d @ "$addr" "$svc/StoreStream" <"$tmp/upload.json" >"$tmp/stored" 2>"$tmp/err" \
  || fail "StoreStream of $(ls "$tmp/pieces" | wc -l) chunks failed: $(cat "$tmp/err")"
holds "the streamed object" ".object | .size == \"$size\" and .crc32c == $stream_crc32c and .kind == \"DATA_KIND_BYTES\"" "$(cat "$tmp/stored")"
rpc RetrieveStream "{\"key\": \"${P}stream\", \"offset\": 1048576, \"limit\": 4096}" >"$tmp/ranged.json"
holds "the ranged download's first message" ".object.size == \"$size\"" "$(jq -s '.[0]' "$tmp/ranged.json")"
chunks <"$tmp/ranged.json" >"$tmp/ranged"
dd if="$tmp/data" of="$tmp/ranged.want" bs=4096 skip=256 count=1 status=none # bytes 1048576..+4096
cmp -s "$tmp/ranged" "$tmp/ranged.want" || fail "the range 1048576+4096 came back as $(wc -c <"$tmp/ranged") bytes that differ"
rpc RetrieveStream "{\"key\": \"${P}stream\"}" >"$tmp/whole.json"
got_sha=$(chunks <"$tmp/whole.json" | sha256sum | cut -d' ' -f1)
want_sha=$(sha256sum <"$tmp/data" | cut -d' ' -f1)
[ "$got_sha" = "$want_sha" ] || fail "the whole download has sha256 $got_sha, want $want_sha"
done_step

step="7 generation precondition"
generation=$(jq -r .object.generation <<<"$(rpc Stat "{\"key\": \"${P}text\"}")")
rpc_fails FailedPrecondition Store "$(jq -c --arg g "$((generation + 12345))" '. + {ifGenerationMatch: $g}' <<<"$text_store")"
stored=$(rpc Store "$(jq -c --arg g "$generation" '. + {ifGenerationMatch: $g}' <<<"$text_store")")
holds "a store with the current generation" "(.object.generation | tonumber) > $generation" "$stored"
done_step

step="8 one error per status"
rpc_fails InvalidArgument Store '{"key": "../x", "data": "eA==", "kind": "DATA_KIND_TEXT"}'
rpc_fails InvalidArgument Store "{\"key\": \"${P}bad\\nkey\", \"data\": \"eA==\", \"kind\": \"DATA_KIND_TEXT\"}"
rpc_fails NotFound Stat "{\"key\": \"${P}missing\"}"
rpc_fails OutOfRange RetrieveStream "{\"key\": \"${P}bytes\", \"offset\": 100}"
rpc_fails InvalidArgument Store "{\"key\": \"${P}bad-text\", \"data\": \"$(printf '\xff\xfe' | b64)\", \"kind\": \"DATA_KIND_TEXT\"}"
# FAILED_PRECONDITION was step 7's.
done_step

step="9 delete and delete many"
holds "the first delete" '.deleted == true' "$(rpc Delete "{\"key\": \"${P}bytes\"}")"
holds "the second delete" '.deleted == false' "$(rpc Delete "{\"key\": \"${P}bytes\"}")"
# Left: text, empty, json, json-looking and stream.
holds "delete many by prefix" '.deletedCount == "5"' "$(rpc DeleteMany "{\"prefix\": \"$P\"}")"
holds "the prefix after delete many" '.keys == []' "$(rpc ListKeys "{\"prefix\": \"$P\"}")"
done_step

step="10 stats"
holds "stats" '.initialized == true and (.totalOperations | tonumber) > 0' "$(rpc GetStats '{}')"
done_step

echo "scenario-grpcurl: every step held"
