#!/usr/bin/env bash
# The project's test command: installs what is missing, builds, runs the unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
swift build --build-tests
swift test --skip-build
# Hostile-peer fuzzing on a mock link (docs/fuzzing.md): FUZZ=1 runs the short pass (AddressSanitizer build in
# .build-asan, >= 1e5 writes per backend). Not in the default run yet: today's code fails it (see docs/fuzzing.md).
if [ "${FUZZ:-0}" = 1 ]; then bash tools/fuzz/run.sh; fi
# The QEMU rig (docs/qemu-rig.md): the real VFIO and UIO paths on a real Linux kernel under TCG.
# RIG=0 skips it (a developer's quick loop); CI runs it.
if [ "${RIG:-1}" != 0 ]; then bash tools/vm/rig.sh; fi
