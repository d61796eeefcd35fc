#!/usr/bin/env bash
# Installs the Debian packages in tests/debian-packages.txt that are missing. Run by `make test` (before it
# makes .venv) and by .ci/run (before make, which may be missing itself).
# Nothing missing: prints nothing. Root: apt-get installs what is missing. Anyone else: one line on stderr
# with the command to run, and exit 1.
set -euo pipefail
list="$(dirname "$0")/debian-packages.txt"

present() {  # present KIND ARGUMENT: is the package's check satisfied?
    case "$1" in
        command) command -v "$2" >/dev/null 2>&1 ;;
        python3) python3 -c "$2" >/dev/null 2>&1 ;;
        *) echo "$list: unknown check '$1' (want command or python3)" >&2; exit 2 ;;
    esac
}

missing() {  # prints the missing packages, one a line, in the list's order
    local package kind argument
    while read -r package kind argument; do
        case "$package" in '' | '#'*) continue ;; esac
        if [ -z "$kind" ] || [ -z "$argument" ]; then
            echo "$list: '$package' needs a check: command <name> or python3 <code>" >&2
            exit 2
        fi
        present "$kind" "$argument" || echo "$package"
    done <"$list"
}

names=$(missing) # set -e: a malformed list stops here
[ -z "$names" ] && exit 0
mapfile -t need <<<"$names"

if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages for the tests; run: sudo apt-get install -y ${need[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q "${need[@]}"

names=$(missing)
if [ -n "$names" ]; then
    echo "installed, yet still missing for the tests:" $names "(see $list)" >&2
    exit 1
fi
