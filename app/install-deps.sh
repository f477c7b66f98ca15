#!/usr/bin/env bash
# Installs the Debian packages sshpool needs to build and run its demo, plus any given as
# arguments (the tests add theirs: promtool, the openssl CLI); only the missing ones, with
# sudo when not root.
# usage: app/install-deps.sh [extra-package...]
set -euo pipefail
packages=(build-essential cmake libcaf-dev libssh-dev libssl-dev libspdlog-dev catch2
  libhttp-parser-dev nlohmann-json3-dev openssh-server openssh-client iproute2 procps curl
  "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} > 0)); then
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  echo "sshpool: installing ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"
fi
