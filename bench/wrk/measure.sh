#!/usr/bin/env bash
# Side-by-side throughput of a running Bazaar and a hello-world Litestar app on the same stack.
# Until `bazaar bench` exists:  bench/wrk/measure.sh http://127.0.0.1:8000 http://127.0.0.1:8001
# The Bazaar instance needs an admin admin@example.com / adminpass1 (`bazaar admin create`).
set -euo pipefail
bazaar=${1:?Bazaar base URL}
hello=${2:?hello-world base URL}
seconds=${SECONDS_PER_RUN:-10}
here=$(dirname "$0")
json() { python3 -c "import sys, json; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
post() { curl -sf -X POST "$bazaar$1" -H 'content-type: application/json' "${@:3}" -d "$2"; }

post /v1/auth/register '{"email":"bench@example.com","password":"benchpass1","name":"Bench"}' \
  >/dev/null || true
customer=$(post /v1/auth/login '{"email":"bench@example.com","password":"benchpass1"}' | json access_token)
admin=$(post /v1/auth/login '{"email":"admin@example.com","password":"adminpass1"}' | json access_token)
product=$(post /v1/products "{\"sku\":\"BENCH-$RANDOM$RANDOM\",\"name\":\"Bench item\",\
\"description\":\"for wrk\",\"category\":\"bench\",\"price\":{\"amount\":100,\"currency\":\"USD\"},\
\"stock\":100000000}" -H "authorization: Bearer $admin" | json id)

run() {
  printf '%-34s' "$1"
  shift
  wrk -t1 -d"${seconds}s" "$@" | awk '/Requests\/sec/ {rps=$2} /Latency/ {lat=$2} /Non-2xx/ {err=$5}
    END {printf "%10s req/s   mean latency %-9s non-2xx %s\n", rps, lat, err+0}'
}
run "hello world (Litestar)" -c64 "$hello/"
run "GET /v1/products/{id}" -c64 "$bazaar/v1/products/$product"
run "GET /v1/products?limit=20" -c64 "$bazaar/v1/products?limit=20"
run "POST /v1/orders" -c32 -s "$here/place_order.lua" "$bazaar" -- "$customer" "$product"
