#!/usr/bin/env bash
# The GPU checks and benchmarks, for a machine with an NVIDIA GPU and no .NET. Prepare on a build machine with
#   ./build.sh gpu-kit        (bin/publish/mplrun and bin/gpu-kit/*.mplc)
# then, on the GPU machine, from the repository root: bash tests/Bench/gpu/device.sh
# 0. Every collective and dtype on GPU arrays against the host communicator (mplrun --check-collectives).
# 1. Every example on the GPU (its logical devices sharing GPU 0: arrays stay on the GPU, collectives through the
#    generated kernels), checked against the CPU back end with --compare cpu (exit 1 on a difference).
# 2. The benchmarks, 10 runs each: mplrun --profile times every launch on the GPU between two events and prints per
#    kernel the total and the fastest launch, and the host-GPU traffic; torch_reference.py times cuBLAS and a
#    device copy on the same GPU (median of 20).
set -uo pipefail
run=bin/publish/mplrun
kit=bin/gpu-kit
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
fail=0
echo "== every collective and dtype on GPU arrays against the host (4 devices sharing GPU 0; NCCL with 4 GPUs)"
$run "$kit/mlp.mplc" --backend cuda --check-collectives || fail=1
for b in mlp attention classifier gpt; do
  steps=1; case $b in classifier|gpt) steps=3 ;; esac
  echo "== $b on the GPU, $steps step(s), against the CPU"
  $run "$kit/$b.mplc" --backend cuda --gpus 1 --steps $steps --compare cpu --profile || fail=1
done
for b in matmul chain; do
  echo "== benchmark: generated $b"
  $run "$kit/$b.mplc" --backend cuda --gpus 1 --repeat 10 --profile || fail=1
done
echo "== PyTorch"
python3 tests/Bench/gpu/torch_reference.py || fail=1
exit $fail
