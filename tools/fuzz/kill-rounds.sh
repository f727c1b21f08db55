#!/usr/bin/env bash
# tools/fuzz/kill-rounds.sh - SIGKILL one side of a mock link mid-transfer, over and over (docs/fuzzing.md).
#
# Per backend and role, N rounds on one mock link:
#   role host:     `serve` (endpoint) runs throughout; each round a host `send` of a large file is killed with
#                  SIGKILL mid-transfer, then a new host `send` must link within --link S seconds and move a file
#                  intact (cmp); `serve` must still run, and its open fds and RSS must stay flat.
#   role endpoint: each round `serve` is killed with SIGKILL while a host `send` is moving a file, a new `serve`
#                  starts on the same link, and a new `send` must link within --link S and move a file intact.
#
#   tools/fuzz/kill-rounds.sh                         # CI: 10 rounds per backend and role
#   tools/fuzz/kill-rounds.sh --rounds 100 --keep     # by hand
#
# Options: --backend host|edma|all  --role host|endpoint|all  --rounds N (default 10)  --link S (default 2)
#          --stall S (bound of one send, default 30)  --seed S  --no-build  --keep
# Prints one line per backend and role:
#   kill: backend=B role=R rounds=N ok=K failed=F link-max=Xs serve-fds=first->last serve-rss-kib=first->last
# and exits non-zero on any failure (a send that did not link or move the file, serve died, fds or RSS grew).
set -uo pipefail
cd "$(dirname "$0")/../.."

BACKENDS=(host edma); ROLES=(host endpoint); ROUNDS=10; LINK=2; STALL=30; BUILD=1; KEEP=0; SEED=""
usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --backend) [ "$2" = all ] && BACKENDS=(host edma) || BACKENDS=("$2"); shift 2 ;;
        --role) [ "$2" = all ] && ROLES=(host endpoint) || ROLES=("$2"); shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        --link) LINK="$2"; shift 2 ;;
        --stall) STALL="$2"; shift 2 ;;
        --seed) SEED="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "kill-rounds.sh: unknown option '$1' (see --help)" >&2; exit 64 ;;
    esac
done
for b in "${BACKENDS[@]}"; do case "$b" in host|edma) ;; *) echo "kill-rounds.sh: --backend must be host, edma or all, not '$b'" >&2; exit 64 ;; esac; done
for r in "${ROLES[@]}"; do case "$r" in host|endpoint) ;; *) echo "kill-rounds.sh: --role must be host, endpoint or all, not '$r'" >&2; exit 64 ;; esac; done
case "$ROUNDS" in ''|*[!0-9]*) echo "kill-rounds.sh: --rounds must be a positive number, not '$ROUNDS'" >&2; exit 64 ;; esac
[ -n "$SEED" ] || SEED=$(( (RANDOM << 15 | RANDOM) ))
RANDOM=$SEED

if [ "$BUILD" = 1 ]; then
    swift build --product ntb-transport 2>&1 | tail -1
    [ "${PIPESTATUS[0]}" = 0 ] || { echo "kill-rounds.sh: build failed" >&2; exit 1; }
fi
NTB="$(swift build --show-bin-path)/ntb-transport"
[ -x "$NTB" ] || { echo "kill-rounds.sh: $NTB not built; run without --no-build" >&2; exit 1; }

WORK=$(mktemp -d /tmp/ntb-kill.XXXXXX)
echo "kill-rounds.sh: seed=$SEED rounds=$ROUNDS link-bound=${LINK}s logs in $WORK"
head -c $((64 << 20)) /dev/urandom > "$WORK/big.bin"     # long enough to be killed mid-transfer
head -c $((4 << 20)) /dev/urandom > "$WORK/check.bin"
FAILED=0

fail() { FAILS=$((FAILS + 1)); echo "   round $K: $*" | tee -a "$WORK/failures.txt"; }

start_serve() {
    SERVE_N=$((SERVE_N + 1)); SERVE_LOG="$WORK/$TAG.serve$SERVE_N.log"
    "$NTB" serve --port "mock:$DIR" --role endpoint --fast --backend "$B" --dir "$OUT" > "$SERVE_LOG" 2>&1 &
    SERVE_PID=$!
}
serve_fds() { ls "/proc/$SERVE_PID/fd" 2>/dev/null | wc -l; }
serve_rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$SERVE_PID/status" 2>/dev/null; }

# check_send LOG: a new host session links within $LINK s and moves check.bin intact. Sets LINKED_MS.
check_send() {
    local log="$1" t0 t1 rc
    rm -f "$OUT/check.bin"
    t0=$(date +%s%N)
    timeout -k 5 "$STALL" "$NTB" send --port "mock:$DIR" --role host --backend "$B" --link-timeout "$LINK" "$WORK/check.bin" > "$log" 2>&1
    rc=$?; t1=$(date +%s%N)
    LINKED_MS=$(( (t1 - t0) / 1000000 ))
    if [ "$rc" != 0 ]; then fail "send after the kill failed (rc=$rc): $(tail -n 1 "$log")"; return 1; fi
    if ! cmp -s "$WORK/check.bin" "$OUT/check.bin"; then fail "send reported success but the received file differs or is missing"; return 1; fi
    return 0
}

for B in "${BACKENDS[@]}"; do
  for R in "${ROLES[@]}"; do
    TAG="$B-$R"; DIR="/dev/shm/ntb-kill-$$-$TAG"; OUT="$WORK/$TAG.out"; mkdir -p "$OUT"
    FAILS=0; OK=0; SERVE_N=0; LINK_MAX=0; FD0=""; RSS0=""; FD1=""; RSS1=""
    "$NTB" mock down --dir "$DIR" --force > /dev/null 2>&1
    "$NTB" mock up --dir "$DIR" --heartbeat-ms 20 --host-ram 160M --ep-ram 160M > "$WORK/$TAG.mock.log" 2>&1 \
        || { echo "kill-rounds.sh: mock up failed: $(tail -n 1 "$WORK/$TAG.mock.log")" >&2; exit 1; }
    start_serve
    K=0
    check_send "$WORK/$TAG.first.log" || { echo "kill-rounds.sh: the link did not work before the first kill ($TAG)" >&2; FAILED=1; }
    for K in $(seq 1 "$ROUNDS"); do
        # A long transfer, killed 100-600 ms in (after the link is up: it takes ~50-200 ms).
        "$NTB" send --port "mock:$DIR" --role host --backend "$B" --link-timeout 10 "$WORK/big.bin" > "$WORK/$TAG.victim$K.log" 2>&1 &
        SEND_PID=$!
        sleep "0.$(( 100 + RANDOM % 500 ))"
        if [ "$R" = host ]; then
            kill -KILL "$SEND_PID" 2>/dev/null
            wait "$SEND_PID" 2>/dev/null
        else
            kill -KILL "$SERVE_PID" 2>/dev/null
            wait "$SERVE_PID" 2>/dev/null
            # The host whose endpoint died: it ends with an error, or is killed after 5 s (its own link timeout is 10 s).
            timeout 5 tail --pid="$SEND_PID" -f /dev/null; kill -KILL "$SEND_PID" 2>/dev/null; wait "$SEND_PID" 2>/dev/null
            start_serve
        fi
        if check_send "$WORK/$TAG.check$K.log"; then OK=$((OK + 1)); fi
        [ "$LINKED_MS" -gt "$LINK_MAX" ] && LINK_MAX=$LINKED_MS
        if ! kill -0 "$SERVE_PID" 2>/dev/null; then
            wait "$SERVE_PID"; fail "serve died (rc=$?): $(tail -n 1 "$SERVE_LOG")"; start_serve
        elif [ "$R" = host ]; then
            # fds and RSS: baseline after round 2 (allocator and caches warmed up), then must stay flat.
            [ "$K" = 2 ] && { FD0=$(serve_fds); RSS0=$(serve_rss); }
            FD1=$(serve_fds); RSS1=$(serve_rss)
        fi
    done
    if [ "$R" = host ] && [ -n "$FD0" ]; then
        [ "$FD1" -le "$FD0" ] || fail "serve's open fds grew from $FD0 to $FD1 over $ROUNDS rounds"
        [ "$RSS1" -le $((RSS0 + 16384)) ] || fail "serve's RSS grew from ${RSS0} KiB to ${RSS1} KiB over $ROUNDS rounds"
    fi
    kill -TERM "$SERVE_PID" 2>/dev/null; wait "$SERVE_PID" 2>/dev/null
    "$NTB" mock down --dir "$DIR" --force > /dev/null 2>&1
    echo "kill: backend=$B role=$R rounds=$ROUNDS ok=$OK failed=$FAILS link+move-max=$(awk "BEGIN{printf \"%.2f\", $LINK_MAX/1000}")s serve-fds=${FD0:-n/a}->${FD1:-n/a} serve-rss-kib=${RSS0:-n/a}->${RSS1:-n/a}"
    [ "$FAILS" = 0 ] || FAILED=1
  done
done
[ -s "$WORK/failures.txt" ] && echo "kill-rounds.sh: failures in $WORK/failures.txt"
[ "$KEEP" = 1 ] || [ "$FAILED" = 1 ] || rm -rf "$WORK"
exit "$FAILED"
