#!/usr/bin/env bash
# tools/fuzz/run.sh - hostile-peer fuzzing of the transport on a mock link (docs/fuzzing.md).
#
# Per round (backend B, role R): mock up; start `serve` (endpoint) and a loop of host `send`s of a file with a known
# checksum; run `ntb-fuzz --role R` against the link meanwhile (R = host: a hostile host attacks the endpoint process;
# R = endpoint: a hostile endpoint attacks the host process). Invariants checked: no process dies by a signal, no
# sanitizer report, every process exits or answers within the stall bound, every send that reported success
# delivered the file intact. Then the fuzzer stops, the peer restarts, and a file must move intact.
#
# Rounds cycle through three target groups (unless --targets): round 3n the handshake (spads,ctrl), 3n+1 the data
# path (doorbells,rings,edma-info,notify,ll,edma-regs), 3n+2 the handshake again with --undo-ms 20 (each hostile
# value lives 20 ms), so a poisoned control region does not hide what lies behind it.
#
#   tools/fuzz/run.sh                      # the short pass (CI): both backends, both roles, 3 rounds, 1e5 writes per backend
#   tools/fuzz/run.sh --backend edma --role endpoint --seed 1235 --first-round 1 --rounds 1 --keep   # reproduce a round
#   tools/fuzz/run.sh --seconds 600 --writes 3000000 --rounds 12 --stall 60                           # a long run
#
# Options: --backend host|edma|all  --role host|endpoint|all  --writes N (per round)  --seconds S (per round)
#          --seed S (round k uses S + k)  --rounds K (per backend and role)  --first-round K  --targets LIST
#          --stall S (default 30)  --keep  --no-build (reuse the binaries already built)
#          --no-asan (plain debug build in .build instead of the AddressSanitizer build in .build-asan)
set -uo pipefail
cd "$(dirname "$0")/../.."

BACKENDS=(host edma); ROLES=(host endpoint)
WRITES=17000; SECONDS_PER_ROUND=10; SEED=""; ROUNDS=3; FIRST=0; TARGETS=""; STALL=30; ASAN=1; KEEP=0; BUILD=1
TARGET_GROUPS=(spads,ctrl doorbells,rings,edma-info,notify,ll,edma-regs spads,ctrl); UNDO_GROUPS=(0 0 20)
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --backend) [ "$2" = all ] && BACKENDS=(host edma) || BACKENDS=("$2"); shift 2 ;;
        --role) [ "$2" = all ] && ROLES=(host endpoint) || ROLES=("$2"); shift 2 ;;
        --writes) WRITES="$2"; shift 2 ;;
        --seconds) SECONDS_PER_ROUND="$2"; shift 2 ;;
        --seed) SEED="$2"; shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        --first-round) FIRST="$2"; shift 2 ;;
        --targets) TARGETS="$2"; shift 2 ;;
        --stall) STALL="$2"; shift 2 ;;
        --no-asan) ASAN=0; shift ;;
        --keep) KEEP=1; shift ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown option '$1' (see --help)" >&2; exit 64 ;;
    esac
done
for b in "${BACKENDS[@]}"; do case "$b" in host|edma) ;; *) echo "run.sh: --backend must be host, edma or all, not '$b'" >&2; exit 64 ;; esac; done
for r in "${ROLES[@]}"; do case "$r" in host|endpoint) ;; *) echo "run.sh: --role must be host, endpoint or all, not '$r'" >&2; exit 64 ;; esac; done
[ -n "$SEED" ] || SEED=$(( (RANDOM << 15 | RANDOM) ))

if [ "$ASAN" = 1 ]; then
    SCRATCH=.build-asan
    BUILD_FLAGS=(-Xswiftc -sanitize=address -Xcc -fsanitize=address)
    # ASan prints the stack of a Swift trap (SIGILL); Swift's own backtracer would trip ASan reading other stacks.
    export ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:print_summary=1:handle_sigill=1:handle_abort=1:${ASAN_OPTIONS:-}"
    export SWIFT_BACKTRACE="enable=no"
else
    SCRATCH=.build
    BUILD_FLAGS=()
fi
echo "run.sh: $([ "$BUILD" = 1 ] && echo building || echo using) ntb-transport and ntb-fuzz in $SCRATCH$([ "$ASAN" = 1 ] && echo ' (AddressSanitizer)')"
for p in ntb-transport ntb-fuzz; do
    [ "$BUILD" = 1 ] || break
    swift build --product "$p" --scratch-path "$SCRATCH" "${BUILD_FLAGS[@]}" 2>&1 | tail -2
    [ "${PIPESTATUS[0]}" = 0 ] || { echo "run.sh: build of $p failed" >&2; exit 1; }
done
BIN=$(swift build --scratch-path "$SCRATCH" "${BUILD_FLAGS[@]}" --show-bin-path)
NTB="$BIN/ntb-transport"; FUZZ="$BIN/ntb-fuzz"
[ "$ASAN" = 1 ] || export SWIFT_BACKTRACE="enable=yes,interactive=no,color=no"

WORK=$(mktemp -d /tmp/ntb-fuzz.XXXXXX)
echo "run.sh: seed=$SEED writes/round=$WRITES seconds/round=$SECONDS_PER_ROUND rounds=$ROUNDS stall=${STALL}s logs in $WORK"
head -c $((1 << 20)) /dev/urandom > "$WORK/payload.bin"
head -c $((4 << 20)) /dev/urandom > "$WORK/check.bin"
FAILED=0
FINDINGS="$WORK/findings.txt"; : > "$FINDINGS"

# finding KIND WHAT LOG: records a failure with the process's last lines and the fuzzer's latest writes.
finding() {
    local kind="$1" what="$2" log="$3"
    {
        echo "== $kind: $what (backend=$B role=$R seed=$S round=$K targets=$T undo-ms=$U)"
        echo "-- last lines of $log:"; tail -n 25 "$log" 2>/dev/null | sed 's/^/   /'
        if [ -s "$TRACE" ]; then echo "-- fuzzer's latest writes (of $(wc -l < "$TRACE")):"; tail -n 12 "$TRACE" | sed 's/^/   /'; fi
    } | tee -a "$FINDINGS"
}

# classify RC WHAT LOG (one process's output): counts a crash (death by a signal, a Swift trap or an ASan-reported
# signal), a hang (killed by `timeout`) or a memory error report (ASan, UBSan), once per process.
CRASH_RE='Precondition failed|Fatal error|Assertion failed|ERROR: AddressSanitizer: (SEGV|ILL|ABRT|BUS|FPE|TRAP)'
classify() {
    local rc="$1" what="$2" log="$3"
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then HANGS=$((HANGS + 1)); finding HANG "$what did not finish within ${STALL}s" "$log"
    elif grep -Eq "$CRASH_RE" "$log" 2>/dev/null; then CRASHES=$((CRASHES + 1)); finding CRASH "$what: $(grep -Em1 "$CRASH_RE" "$log")" "$log"
    elif [ "$rc" -ge 128 ] 2>/dev/null; then CRASHES=$((CRASHES + 1)); finding CRASH "$what died by signal $((rc - 128))" "$log"
    elif grep -q "ERROR: AddressSanitizer\|runtime error:\|ERROR: LeakSanitizer" "$log" 2>/dev/null; then
        ASANS=$((ASANS + 1)); finding ASAN "$what: $(grep -m1 "SUMMARY: AddressSanitizer\|runtime error:" "$log")" "$log"
    fi
}

start_serve() {
    SERVE_N=$((SERVE_N + 1)); SERVE_LOG="$WORK/$TAG.serve$SERVE_N.log"
    "$NTB" serve --port "mock:$DIR" --role endpoint --fast --backend "$B" --dir "$OUT" > "$SERVE_LOG" 2>&1 &
    SERVE_PID=$!
}

# check_serve: if serve is gone, classify how it ended and start another.
check_serve() {
    if ! kill -0 "$SERVE_PID" 2>/dev/null; then
        wait "$SERVE_PID"; local rc=$?
        classify "$rc" "serve (endpoint)" "$SERVE_LOG"
        if [ "$rc" -lt 128 ]; then SERVE_EXITS=$((SERVE_EXITS + 1)); echo "   serve exited $rc: $(tail -n 1 "$SERVE_LOG")" >> "$WORK/$TAG.events"; fi
        start_serve
    fi
}

stop_serve() {
    kill -TERM "$SERVE_PID" 2>/dev/null
    for _ in $(seq 1 $((STALL * 10))); do kill -0 "$SERVE_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$SERVE_PID" 2>/dev/null; then
        HANGS=$((HANGS + 1)); finding HANG "serve ignored SIGTERM for ${STALL}s" "$SERVE_LOG"; kill -KILL "$SERVE_PID" 2>/dev/null
    fi
    wait "$SERVE_PID" 2>/dev/null; local rc=$?
    [ "$rc" = 143 ] || [ "$rc" = 0 ] || classify "$rc" "serve (endpoint)" "$SERVE_LOG"
}

# send_once NAME LOG: one host `send` of $WORK/NAME; returns 0 when it reported success AND the file arrived intact.
send_once() {
    local name="$1" log="$2"
    rm -f "$OUT/$name"
    timeout -k 5 "$STALL" "$NTB" send --port "mock:$DIR" --role host --backend "$B" --link-timeout 10 "$WORK/$name" > "$log.one" 2>&1
    local rc=$?
    classify "$rc" "send (host)" "$log.one"
    cat "$log.one" >> "$log"; rm -f "$log.one"
    SENDS=$((SENDS + 1))
    if [ "$rc" = 0 ]; then
        if cmp -s "$WORK/$name" "$OUT/$name"; then OK_SENDS=$((OK_SENDS + 1)); return 0; fi
        LOST=$((LOST + 1)); finding LOST "send reported success but $OUT/$name is missing or differs" "$log"; return 1
    fi
    return 1
}

for B in "${BACKENDS[@]}"; do
  for R in "${ROLES[@]}"; do
    TOTAL_WRITES=0; CRASHES=0; ASANS=0; HANGS=0; LOST=0; SENDS=0; OK_SENDS=0; SERVE_EXITS=0
    for K in $(seq "$FIRST" $((FIRST + ROUNDS - 1))); do
        S=$((SEED + K)); T=${TARGETS:-${TARGET_GROUPS[$((K % 3))]}}; U=${UNDO_GROUPS[$((K % 3))]}; TAG="$B-$R-$K"; DIR="/dev/shm/ntb-fuzz-$$-$TAG"; OUT="$WORK/$TAG.out"; TRACE="$WORK/$TAG.trace"
        mkdir -p "$OUT"; : > "$WORK/$TAG.events"; SERVE_N=0
        "$NTB" mock down --dir "$DIR" --force > /dev/null 2>&1
        "$NTB" mock up --dir "$DIR" --heartbeat-ms 20 --host-ram 32M --ep-ram 32M > "$WORK/$TAG.mock.log" 2>&1 \
            || { echo "run.sh: mock up failed: $(tail -n 1 "$WORK/$TAG.mock.log")" >&2; exit 1; }
        start_serve
        # A first clean transfer: the link works before the fuzzer starts (and the host's buffers exist to be found).
        send_once payload.bin "$WORK/$TAG.send.log" || { finding SETUP "the link did not work before fuzzing" "$WORK/$TAG.send.log"; FAILED=1; }
        "$FUZZ" --dir "$DIR" --role "$R" --backend "$B" --seed "$S" --targets "$T" --undo-ms "$U" --writes "$WRITES" --seconds "$SECONDS_PER_ROUND" \
            --trace "$TRACE" > "$WORK/$TAG.fuzz.log" 2>&1 &
        FUZZ_PID=$!
        while kill -0 "$FUZZ_PID" 2>/dev/null; do
            send_once payload.bin "$WORK/$TAG.send.log"
            check_serve
        done
        wait "$FUZZ_PID"; FRC=$?
        classify "$FRC" "ntb-fuzz" "$WORK/$TAG.fuzz.log"
        [ "$FRC" = 0 ] || { echo "run.sh: ntb-fuzz failed ($FRC): $(tail -n 1 "$WORK/$TAG.fuzz.log")" >&2; FAILED=1; }
        W=$(sed -n 's/.*done seed=[0-9]* writes=\([0-9]*\).*/\1/p' "$WORK/$TAG.fuzz.log"); TOTAL_WRITES=$((TOTAL_WRITES + ${W:-0}))
        # Recovery: the fuzzer stopped; restart the victim's peer and move a file.
        #  role host: the victim is serve; the peer (host) restarts with each send, so the same serve must answer.
        #  role endpoint: the victim is the host; restart the endpoint (serve).
        check_serve
        if [ "$R" = endpoint ]; then stop_serve; start_serve; fi
        if ! send_once check.bin "$WORK/$TAG.recover.log"; then
            HANGS=$((HANGS + 1)); finding NO-RECOVERY "the surviving victim did not move a file after the fuzzer stopped" "$WORK/$TAG.recover.log"
            stop_serve; "$NTB" mock down --dir "$DIR" --force > /dev/null 2>&1
            "$NTB" mock up --dir "$DIR" --heartbeat-ms 20 --host-ram 32M --ep-ram 32M > /dev/null 2>&1; start_serve
            send_once check.bin "$WORK/$TAG.recover2.log" || { LOST=$((LOST + 1)); finding LOST "no file moved even after restarting both sides on a fresh link" "$WORK/$TAG.recover2.log"; }
        fi
        stop_serve
        [ -s "$WORK/$TAG.events" ] && { echo "-- $TAG: serve exits (clear errors) during fuzzing:"; sort "$WORK/$TAG.events" | uniq -c | sort -rn | head -n 5; }
        "$NTB" mock down --dir "$DIR" --force > /dev/null 2>&1
    done
    echo "fuzz: backend=$B role=$R writes=$TOTAL_WRITES crashes=$CRASHES asan=$ASANS hangs=$HANGS lost=$LOST rounds=$ROUNDS"
    echo "      sends during and after fuzzing: $OK_SENDS of $SENDS moved the file intact; serve exited with an error $SERVE_EXITS times"
    [ $((CRASHES + ASANS + HANGS + LOST)) = 0 ] || FAILED=1
  done
done
[ -s "$FINDINGS" ] && echo "run.sh: findings in $FINDINGS"
[ "$KEEP" = 1 ] || [ "$FAILED" = 1 ] || rm -rf "$WORK"
exit "$FAILED"
