// examples/gpt_sp.mpl: the transformer of examples/gpt.mpl with sequence parallelism. Only the block's input and
// output say where positions go (split over tp, the batch over dp); the weights are Megatron's tensor-parallel
// ones. The compiler finds the rest: before each column-parallel matmul the positions are gathered, after each
// row-parallel one the partial sums are reduce-scattered back to positions, and no weight moves.
mesh grid[dp = 2, tp = 2];

const B = 8; const S = 32; const D = 64; const NH = 4; const HD = D / NH; const V = 128; const L = 4;

layer attention(x: f32[B, S, D]) -> f32[B, S, D] {
  param wq: f32[D, D] shard[_, tp];
  param wk: f32[D, D] shard[_, tp];
  param wv: f32[D, D] shard[_, tp];
  param wo: f32[D, D] shard[tp, _];
  let q = transpose(reshape(x @ wq, [B, S, NH, HD]), [0, 2, 1, 3]);
  let k = transpose(reshape(x @ wk, [B, S, NH, HD]), [0, 2, 3, 1]);
  let v = transpose(reshape(x @ wv, [B, S, NH, HD]), [0, 2, 1, 3]);
  let p = softmax(causal_mask(q @ k / sqrt(HD)));
  return reshape(transpose(p @ v, [0, 2, 1, 3]), [B, S, D]) @ wo;
}

layer mlp(x: f32[B, S, D]) -> f32[B, S, D] {
  param w1: f32[D, 4 * D] shard[_, tp];
  param w2: f32[4 * D, D] shard[tp, _];
  return gelu(x @ w1) @ w2;
}

layer block(x: f32[B, S, D] shard[dp, tp, _]) -> f32[B, S, D] shard[dp, tp, _] {
  param g1: f32[D] = ones;  param b1: f32[D] = zeros;
  param g2: f32[D] = ones;  param b2: f32[D] = zeros;
  let h = x + attention(layernorm(x, g1, b1));
  return h + mlp(layernorm(h, g2, b2));
}

model gpt(tokens: i32[B, S] shard[dp, _], labels: i32[B, S] shard[dp, _]) -> f32[] {
  param wte: f32[V, D];
  param wpe: f32[S, D];
  let x = embedding(tokens, wte) + wpe;
  for i in 0..L { x = block(x); }
  return cross_entropy(x @ transpose(wte, [1, 0]), labels);
}

train gpt optimizer adam(lr = 3e-4);
