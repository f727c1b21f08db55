#!/usr/bin/env bash
# The project's test command: installs what is missing, builds, runs the unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
swift build --build-tests
swift test --skip-build
# The QEMU rig (docs/qemu-rig.md): the real VFIO and UIO paths on a real Linux kernel under TCG.
# RIG=0 skips it (a developer's quick loop); CI runs it.
if [ "${RIG:-1}" != 0 ]; then bash tools/vm/rig.sh; fi
