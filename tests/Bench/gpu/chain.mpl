// The GPU memory-bandwidth benchmark: one fused elementwise chain over 64 M f32 (compare with a device copy).
const N = 67108864;
model chain(x: f32[N]) -> f32[N] {
  return relu(x * 2.0 + 0.5);
}
