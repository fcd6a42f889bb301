#!/usr/bin/env bash
# Install the Debian packages the test-suite needs, when they are missing.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v git >/dev/null 2>&1 || need+=(git)
# the console's browser tests (tests/test_console_browser.py) drive Debian's chromium headless
[ -x /usr/bin/chromium ] || need+=(chromium)
# the compiled request path (gateway/compiled.py): a C compiler and Python's headers
command -v gcc >/dev/null 2>&1 || need+=(gcc)
include=$("${PYTHON:-python3}" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
[ -f "$include/Python.h" ] || need+=(python3-dev)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing Debian packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
