// examples/attention.mpl: the attention layer of docs/language.md alone, Megatron-style: heads split over
// tp (column-parallel wq, wk, wv; row-parallel wo), the batch over dp.
mesh grid[dp = 2, tp = 2];

const B = 8; const S = 32; const D = 64; const NH = 4; const HD = D / NH;

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

model attn(x: f32[B, S, D] shard[dp, _, _]) -> f32[B, S, D] {
  return attention(x);
}
