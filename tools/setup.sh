#!/usr/bin/env bash
# Installs the Debian 12 packages troupe needs to build, run and test.
# Idempotent and fast when everything is already installed: apt is only
# called for packages that are missing. Run as root (or with sudo).
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libcaf-dev libboost1.81-dev libpqxx-dev libpq-dev nlohmann-json3-dev libspdlog-dev
  libsqlite3-dev libssl-dev libexpected-dev
  libgoogle-perftools-dev  # tcmalloc_minimal, the allocator of release builds (docs/benchmarks.md)
  googletest libgtest-dev libgmock-dev
  postgresql curl
  tmux  # tests/integration/watch_test.cpp runs `troupe watch` in a terminal
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup: all build, run and test dependencies are installed"
