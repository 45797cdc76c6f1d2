#!/usr/bin/env bash
# Runs the GPU benchmarks on a machine with an NVIDIA GPU and no .NET. Prepare on a build machine with
#   ./build.sh publish && bin/mplc compile tests/Bench/gpu/matmul.mpl -o bin/gpu-bench/matmul.mplc --gpu sm_80 \
#     && bin/mplc compile tests/Bench/gpu/chain.mpl -o bin/gpu-bench/chain.mplc --gpu sm_80
# then, on the GPU machine, from the repository root: bash tests/Bench/gpu/device.sh
# mplrun --profile prints, per kernel, the time in launch + execution on the GPU (buffer copies excluded).
set -euo pipefail
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
for b in matmul chain; do
  echo "== generated $b"
  bin/publish/mplrun "bin/gpu-bench/$b.mplc" --backend cuda --profile
done
echo "== PyTorch"
python3 tests/Bench/gpu/torch_reference.py
