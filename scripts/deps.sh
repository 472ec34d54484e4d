#!/usr/bin/env bash
# Install every Debian package that building, testing and the demo need.
# Idempotent: when everything is present it changes nothing and prints one line.
# Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config clang libclang-rt-14-dev
  libssl-dev libp11-kit-dev p11-kit libjansson-dev libcmocka-dev
  libwebsockets-dev libsqlite3-dev libcurl4-openssl-dev libpq-dev
  # tests and demo: a real PKCS#11 token, its tools, PIN entry, validators
  openssl softhsm2 opensc pinentry-tty tmux valgrind python3 python3-yaml sqlite3 curl python3-websockets python3-cryptography
  # the agent's Secret Service (libsecret) and its test: gnome-keyring on a private bus
  libsecret-1-dev gnome-keyring libsecret-tools dbus dbus-bin
  # AdES formats: XML (XAdES), zlib (PDF streams), and the independent validators
  # and PDF producers of their tests
  libxml2-dev libxmlsec1-dev libxmlsec1-openssl zlib1g-dev xmlsec1 qpdf poppler-utils
  ghostscript libnss3-tools python3-cairo python3-jwcrypto
  # the PostgreSQL store and its tests (a private cluster per test)
  postgresql
  # the NATS bus between replicas (libnats) and its tests (a private nats-server per test)
  libnats-dev nats-server
  # the deployment manifests' lint (tests/integration/deploy_lint.sh)
  yamllint
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "deps: installing ${missing[*]}"
SUDO=
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: installed ${#missing[@]} packages"
