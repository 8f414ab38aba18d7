#!/usr/bin/env bash
# Installs everything mcuformer needs on a fresh Debian machine: the Arm toolchain, newlib, QEMU,
# and the Python package with its dependencies (CPU build of torch, pinned). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v arm-none-eabi-gcc >/dev/null 2>&1 || need_apt+=(gcc-arm-none-eabi)
[ -e /usr/lib/arm-none-eabi/newlib/libc_nano.a ] || [ -e /usr/lib/arm-none-eabi/lib/libc_nano.a ] || need_apt+=(libnewlib-arm-none-eabi)
command -v qemu-system-arm >/dev/null 2>&1 || need_apt+=(qemu-system-arm)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)  # export --format lib: the library example (tests/test_library.py)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} (apt-get)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

PY=${PY:-python3}
# torch first and pinned: an unpinned torch pulls several GB of CUDA packages.
$PY -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null \
  || $PY -m pip install -q torch==2.13.0
$PY -m pip install -q -e ".[dev]"
echo "setup: ok ($(arm-none-eabi-gcc --version | head -n1); $(qemu-system-arm --version | head -n1))"
