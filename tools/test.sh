#!/usr/bin/env bash
# The project's test command: installs what is missing, builds, runs the unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--tsan" ]; then
    # The transport, mock and eDMA tests under ThreadSanitizer, in their own build directory (the default
    # run is unchanged). tools/tsan.supp holds the one known limitation (Swift's Mutex on Linux); any
    # other report fails the run. Slow: build once, run the suites.
    bash tools/setup.sh
    swift build --build-tests --sanitize=thread --scratch-path .build-tsan
    log=$(mktemp)
    status=0
    TSAN_OPTIONS="suppressions=$PWD/tools/tsan.supp halt_on_error=0 report_signal_unsafe=0 ${TSAN_OPTIONS:-}" \
        swift test --skip-build --sanitize=thread --scratch-path .build-tsan \
        --filter 'NTBTransportTests|NTBMockTests|DWEDMATests' 2>&1 | tee "$log" || status=$?
    reports=$(grep -c '^WARNING: ThreadSanitizer' "$log" || true)
    rm -f "$log"
    if [ "$reports" != 0 ]; then echo "tools/test.sh --tsan: $reports ThreadSanitizer report(s)" >&2; exit 1; fi
    exit "$status"
fi
bash tools/setup.sh
swift build --build-tests
swift test --skip-build
# Hostile-peer fuzzing on a mock link (docs/fuzzing.md): FUZZ=1 runs the short pass (AddressSanitizer build in
# .build-asan, >= 1e5 writes per backend). Not in the default run yet: today's code fails it (see docs/fuzzing.md).
if [ "${FUZZ:-0}" = 1 ]; then bash tools/fuzz/run.sh; fi
# The QEMU rig (docs/qemu-rig.md): the real VFIO and UIO paths on a real Linux kernel under TCG.
# RIG=0 skips it (a developer's quick loop); CI runs it.
if [ "${RIG:-1}" != 0 ]; then bash tools/vm/rig.sh; fi
