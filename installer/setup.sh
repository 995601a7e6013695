#!/usr/bin/env bash
# Install what is missing, quietly: the apt packages in installer/apt-packages.txt and the .venv.
# Idempotent: a second run with nothing missing prints nothing and takes about a second.
# `setup.sh --check` only reports what is missing (exit 1 if anything is) and changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
check_only=0
[[ ${1:-} == --check ]] && check_only=1

# What the .venv is built from: the dependencies and the compiled modules (setup.py, app/**/*.c).
install_stamp() { cat pyproject.toml setup.py $(find app -name '*.c' | LC_ALL=C sort) | sha256sum | cut -d' ' -f1; }

want=$(grep -vE '^\s*(#|$)' installer/apt-packages.txt)
missing=()
for pkg in $want; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
    [[ "$status" == ii* ]] || missing+=("$pkg")
done
if ((check_only)); then
    stale=0
    stamp=.venv/.shieldwright-stamp
    [[ -x .venv/bin/python && -f $stamp && $(cat "$stamp") == $(install_stamp) ]] || stale=1
    ((${#missing[@]})) && echo "setup: missing system packages: ${missing[*]}"
    ((stale)) && echo "setup: .venv is missing or older than pyproject.toml, setup.py or its C sources"
    ((${#missing[@]} + stale == 0))
    exit
fi
if ((${#missing[@]})); then
    echo "setup: installing system packages: ${missing[*]}"
    sudo_cmd=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
        sudo_cmd=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The demo image downloads a Debian cloud kernel with `apt-get download`, which needs package lists.
if ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
    echo "setup: refreshing apt package lists (needed to fetch the demo kernel)"
    if [[ $(id -u) -eq 0 ]]; then apt-get update -qq; else sudo apt-get update -qq; fi
fi

# Rebuild the venv when what it is built from changed since it was made (this also recompiles _xts.c).
stamp=.venv/.shieldwright-stamp
want_stamp=$(install_stamp)
if [[ ! -x .venv/bin/python || ! -f $stamp || $(cat "$stamp") != "$want_stamp" ]]; then
    echo "setup: building .venv"
    python3 -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
    echo "$want_stamp" > "$stamp"
fi
