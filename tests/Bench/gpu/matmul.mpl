// The GPU matmul benchmark: one 4096x4096x4096 f32 product (compare with PyTorch's, torch_reference.py).
const N = 4096;
model matmul(a: f32[N, N], b: f32[N, N]) -> f32[N, N] {
  return a @ b;
}
