#!/bin/sh
# The course's src/ch09/app/count.sh: write "RUNNING loop seq N" every 10 s.
# Two changes, both so the pod stops promptly: SIGTERM is trapped too (kubelet sends TERM,
# not INT), and sleep runs in the background so `wait` returns as soon as a signal arrives
# (a foreground sleep would delay the trap by up to the whole interval).
# COUNT_INTERVAL and HTDOCS exist so the tests can run this script quickly outside a pod.
HTDOCS="${HTDOCS:-/var/htdocs}"
INTERVAL="${COUNT_INTERVAL:-10}"
sleeper=""
trap 'kill $sleeper 2>/dev/null; exit 0' INT TERM
mkdir -p "$HTDOCS"
for i in $(seq 0 99999); do
    echo "RUNNING loop seq $i" > "$HTDOCS/index.html"
    sleep "$INTERVAL" &
    sleeper=$!
    wait "$sleeper"
done
