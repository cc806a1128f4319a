#!/usr/bin/env bash
# The whole test suite: sets up the pinned TensorFlow venv (for the live-TF
# tests and the Python consumer checks), then runs every Rust test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup-tensorflow.sh
set -a
# shellcheck disable=SC1091
. .tf/env
set +a
export TFBN_REQUIRE_TF=1
export TF_CPP_MIN_LOG_LEVEL=2

cargo test --all-features "$@"
