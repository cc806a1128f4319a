#!/usr/bin/env bash
# Prepare the TensorFlow side of tfbn: a Python venv with pinned TensorFlow
# (used by scripts/gen_testdata.py and the parity tests) and a folder of links
# that the Rust `tensorflow` crate's run-time loader understands.
#
#   .venv/                       python3 -m venv, pinned packages below
#   .tf/lib/libtensorflow.so           -> <site-packages>/tensorflow/libtensorflow_cc.so.2
#   .tf/lib/libtensorflow_framework.so.2 -> <site-packages>/tensorflow/libtensorflow_framework.so.2
#   .tf/env                      TENSORFLOW_DIR=<abs .tf/lib>, TFBN_TF_LIB=<tensorflow pkg dir>
#
# The loader resolves libtensorflow_framework.so.2 next to the *link*, not next
# to its target, so both links must sit in the same folder (see
# docs/reliability.md#finding-tensorflow). Idempotent: a second run only checks
# `pip freeze` and the links, and prints one line.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd -P)"

# Pins. TF and tf-keras must match each other; numpy/safetensors are the
# versions the committed fixtures were generated with.
pins=(
    "tensorflow-cpu==2.21.0"
    "tf-keras==2.21.0"
    "numpy==2.4.6"
    "safetensors==0.8.0"
)

did=()

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
    did+=("created .venv")
fi

# Compare pins against `pip freeze` (names normalised: lower case, '_' -> '-').
frozen="$(.venv/bin/python -m pip freeze --disable-pip-version-check 2>/dev/null \
    | tr '[:upper:]' '[:lower:]' | tr '_' '-')"
missing=()
for pin in "${pins[@]}"; do
    if ! grep -qxF -- "$pin" <<<"$frozen"; then
        missing+=("$pin")
    fi
done
if ((${#missing[@]})); then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "${pins[@]}"
    did+=("installed ${missing[*]}")
fi

# Locate the tensorflow package without importing it (an import takes seconds).
pkg="$(.venv/bin/python - <<'EOF'
import importlib.util, sys
spec = importlib.util.find_spec("tensorflow")
if spec is None or not spec.submodule_search_locations:
    sys.exit("tensorflow is not installed in .venv")
print(list(spec.submodule_search_locations)[0])
EOF
)"
pkg="$(cd "$pkg" && pwd -P)"
for lib in libtensorflow_cc.so.2 libtensorflow_framework.so.2; do
    if [[ ! -f "$pkg/$lib" ]]; then
        echo "setup-tensorflow: $pkg/$lib not found (is tensorflow-cpu 2.21.0 installed?)" >&2
        exit 1
    fi
done

mkdir -p .tf/lib
link() { # link TARGET NAME: (re)create .tf/lib/NAME -> TARGET unless already right
    if [[ "$(readlink ".tf/lib/$2" 2>/dev/null || true)" != "$1" ]]; then
        ln -sfn "$1" ".tf/lib/$2"
        did+=("linked .tf/lib/$2")
    fi
}
link "$pkg/libtensorflow_cc.so.2" libtensorflow.so
link "$pkg/libtensorflow_framework.so.2" libtensorflow_framework.so.2

env_text="TENSORFLOW_DIR=$root/.tf/lib
TFBN_TF_LIB=$pkg"
if [[ ! -f .tf/env || "$(cat .tf/env)" != "$env_text" ]]; then
    printf '%s\n' "$env_text" >.tf/env.tmp
    mv .tf/env.tmp .tf/env
    did+=("wrote .tf/env")
fi

if ((${#did[@]})); then
    msg="$(IFS=';'; echo "${did[*]}")"
    echo "setup-tensorflow: ${msg//;/; } (TENSORFLOW_DIR=$root/.tf/lib)"
else
    echo "setup-tensorflow: already set up (TENSORFLOW_DIR=$root/.tf/lib)"
fi
