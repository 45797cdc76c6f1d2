"""PyTorch references for the GPU benchmarks: cuBLAS f32 matmul at 4096^3 (TF32 off) and a device copy."""
import torch

def timed(fn, reps=20):
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]

torch.backends.cuda.matmul.allow_tf32 = False
n = 4096
a = torch.randn(n, n, device="cuda")
b = torch.randn(n, n, device="cuda")
ms = timed(lambda: a @ b)
print(f"torch matmul {n}^3 f32: {ms:.3f} ms, {2 * n**3 / ms / 1e9:.1f} TFLOP/s")
x = torch.randn(64 * 1024 * 1024, device="cuda")
y = torch.empty_like(x)
ms = timed(lambda: y.copy_(x))
print(f"torch device copy of 64 M f32: {ms:.3f} ms, {2 * x.numel() * 4 / ms / 1e6:.1f} GB/s")
