#!/usr/bin/env bash
# What `make bench` needs beyond the test set-up: wrk, from Debian.
set -euo pipefail
command -v wrk >/dev/null && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "wrk is missing: install it with 'sudo apt-get install -y wrk'" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q wrk
