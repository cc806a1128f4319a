#!/usr/bin/env bash
# Prepare one Python venv per older TensorFlow release, used by
# scripts/gen_versions.py to write the testdata/tf2_<minor>_* fixtures.
#
#   ${TFBN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tfbn}/venvs/tf-<ver>/
#
#   scripts/setup-tf-versions.sh            # every version below
#   scripts/setup-tf-versions.sh 2.12.1     # only these
#   scripts/setup-tf-versions.sh --list     # print "<ver> <venv dir>" lines
#
# Pins: tensorflow-cpu, the numpy its metadata allows on Python 3.11, and the
# Keras that builds the models (bundled keras 2.x up to TF 2.15; from TF 2.16
# Keras 3 plus the matching tf-keras for the Keras-2 writer). Other
# dependencies are whatever pip resolves for these pins. The venvs use
# Python 3.11 ($TFBN_PYTHON, default python3.11) because these wheels exist
# for it. Idempotent: an existing venv whose `pip freeze` already has every pin
# is left alone (one line per version). Wheels are installed one version at a
# time (tensorflow-cpu wheels are 200-250 MB each).
set -euo pipefail

declare -A PINS=(
    [2.12.1]="tensorflow-cpu==2.12.1 numpy==1.23.5"
    [2.13.1]="tensorflow-cpu==2.13.1 numpy==1.24.3"
    [2.15.1]="tensorflow-cpu==2.15.1 numpy==1.26.4"
    [2.16.2]="tensorflow-cpu==2.16.2 numpy==1.26.4 keras==3.3.3 tf-keras==2.16.0"
)
ORDER=(2.12.1 2.13.1 2.15.1 2.16.2)

cache="${TFBN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tfbn}"
py="${TFBN_PYTHON:-python3.11}"

if [[ "${1:-}" == "--list" ]]; then
    for v in "${ORDER[@]}"; do echo "$v $cache/venvs/tf-$v"; done
    exit 0
fi

versions=("$@")
((${#versions[@]})) || versions=("${ORDER[@]}")
for v in "${versions[@]}"; do
    if [[ -z "${PINS[$v]:-}" ]]; then
        echo "setup-tf-versions: unknown version $v (known: ${ORDER[*]})" >&2
        exit 2
    fi
done

mkdir -p "$cache/venvs"
for v in "${versions[@]}"; do
    dir="$cache/venvs/tf-$v"
    read -r -a pins <<<"${PINS[$v]}"
    did=()
    if [[ ! -x "$dir/bin/python" ]]; then
        "$py" -m venv "$dir"
        did+=("created venv")
    fi
    frozen="$("$dir/bin/python" -m pip freeze --disable-pip-version-check 2>/dev/null \
        | tr '[:upper:]' '[:lower:]' | tr '_' '-')"
    missing=()
    for pin in "${pins[@]}"; do
        grep -qxF -- "$pin" <<<"$frozen" || missing+=("$pin")
    done
    if ((${#missing[@]})); then
        "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir "${pins[@]}"
        did+=("installed ${missing[*]}")
    fi
    if ((${#did[@]})); then
        msg="$(IFS=';'; echo "${did[*]}")"
        echo "setup-tf-versions: tf-$v: ${msg//;/; } ($dir)"
    else
        echo "setup-tf-versions: tf-$v: already set up ($dir)"
    fi
done
