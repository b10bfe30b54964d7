#!/usr/bin/env bash
# Installs every system program the tests and benchmarks run (Debian/Ubuntu): `npm run setup:peers`.
# Without them the tests that need them are skipped (under CI=true they fail). The list is the table
# in test/helpers/peers.ts; test/peers.test.ts checks that the two agree.
set -euo pipefail

packages=(
  curl ncat netcat-openbsd proxychains4 python3 python3-socks chromium haproxy microsocks
  dante-server util-linux redis-server openssl hyperfine
)

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then exec sudo bash "$0" "$@"; fi
  echo "setup:peers runs apt-get and needs root: run it as root, or install sudo" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
# Install what the apt sources have, and name the rest, rather than install nothing: Ubuntu, for
# one, ships Chromium only as a snap (`snap install chromium`).
available=()
unavailable=()
for package in "${packages[@]}"; do
  if apt-cache show --no-all-versions "$package" >/dev/null 2>&1; then available+=("$package"); else unavailable+=("$package"); fi
done
apt-get install -y --no-install-recommends "${available[@]}"
if [ "${#unavailable[@]}" -gt 0 ]; then
  echo "not in your apt sources, install them another way: ${unavailable[*]}" >&2
  exit 1
fi
