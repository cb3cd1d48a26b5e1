#!/usr/bin/env bash
# Installs the Debian 12 packages that building and testing need, if any
# are missing.  Safe to run again: it does nothing when all are present.
#   scripts/install-deps.sh [extra packages...]
set -eu
pkgs=(meson ninja-build pkg-config gcc clang libclang-rt-14-dev
      liburing-dev libjson-c-dev libglib2.0-dev spin socat strace "$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
    missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
