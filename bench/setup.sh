#!/usr/bin/env bash
# Installs the PyTorch CPU reference into bench/.venv (idempotent).
# PyPI's Linux torch wheel is a CUDA build that loads the NVIDIA libraries at import, so they are
# installed too (several GB); the benchmark runs it on the CPU only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv="$here/.venv"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import torch, safetensors, numpy" 2>/dev/null; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q "torch==2.*" numpy safetensors
"$venv/bin/python" -c "import torch; print('torch', torch.__version__, 'threads', torch.get_num_threads())"
