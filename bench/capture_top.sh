#!/usr/bin/env bash
# docs/top.txt: a frame of `bazaar top`, in tmux, watching the `bazaar up` that a
# `bazaar bench --quick --mode scaled` runs, taken while the bench loads it.
#   bench/capture_top.sh [FILE]        (FILE: docs/top.txt by default; run from the repository)
# The bench runs on a data dir of its own, which `bazaar top` is given: with no `up` of its own
# there, it watches the bench's (cli/top.py). The frame is taken CAPTURE_DELAY seconds after the
# bench's log shows CAPTURE_AT (a step of its progress), then the bench runs to its end.
set -euo pipefail
out=${1:-docs/top.txt}
bazaar=${BAZAAR:-.venv/bin/bazaar}
at=${CAPTURE_AT:-a storefront\'s day}
delay=${CAPTURE_DELAY:-12}
instances=${BENCH_INSTANCES:-1,2}
seconds=${BENCH_SECONDS:-10}  # a journey twice that: the last minute's rates fill up
data=$(mktemp -d /tmp/bazaar-top-XXXXXX)
chmod 755 "$data"  # `up`'s PostgreSQL runs as its own user, who must enter the folder
log=$data/bench.log
socket=bazaar-top-$$
: >"$log"

BAZAAR_DATA_DIR=$data "$bazaar" bench --quick --mode scaled --instances "$instances" \
  --seconds "$seconds" >"$log" 2>&1 &
bench=$!
finish() {
  tmux -L "$socket" kill-server 2>/dev/null || true
  if kill -0 "$bench" 2>/dev/null; then
    kill -INT "$bench"  # the bench stops its `up` on the way out
    wait "$bench" || true
  fi
  rm -rf "$data"
}
trap finish EXIT

echo "bench: pid $bench, log $log; waiting for \"$at\""
until grep -qF "$at" "$log"; do
  if ! kill -0 "$bench" 2>/dev/null; then
    echo "the bench ended before \"$at\":" >&2
    tail -20 "$log" >&2
    exit 1
  fi
  sleep 1
done
tmux -L "$socket" new-session -d -x 160 -y 60 -e "BAZAAR_DATA_DIR=$data" "$bazaar top"
sleep "$delay"
# the pane's lines without their trailing blanks, and without the blank lines below the frame
tmux -L "$socket" capture-pane -p -t 0 | sed -e 's/[[:space:]]*$//' |
  awk '{ line[NR] = $0 } NF { last = NR } END { for (i = 1; i <= last; i++) print line[i] }' >"$out"
tmux -L "$socket" kill-server
echo "captured $out; the bench runs to its end"
wait "$bench" || echo "the bench's smoke failed (a shared machine misses bounds); its last lines:"
tail -3 "$log"
