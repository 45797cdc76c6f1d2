// examples/mlp.mpl: a two-layer MLP, Megatron-style tensor parallel.
mesh grid[dp = 2, tp = 2];

const B = 8;
const D = 64;
const H = 4 * D;

model mlp(x: f32[B, D] shard[dp, _]) -> f32[B, D] {
  param w1: f32[D, H] shard[_, tp];
  param b1: f32[H]    shard[tp];
  param w2: f32[H, D] shard[tp, _];
  let h = gelu(x @ w1 + b1);
  return h @ w2;
}
