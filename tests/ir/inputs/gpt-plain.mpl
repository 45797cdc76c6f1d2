// The transformer of examples/gpt.mpl with its plan taken out (no mesh, no shardings, no @pipeline): what
// mplc plan starts from.

const B = 8; const S = 32; const D = 64; const NH = 4; const HD = D / NH; const V = 128; const L = 4;

layer attention(x: f32[B, S, D]) -> f32[B, S, D] {
  param wq: f32[D, D];
  param wk: f32[D, D];
  param wv: f32[D, D];
  param wo: f32[D, D];
  let q = transpose(reshape(x @ wq, [B, S, NH, HD]), [0, 2, 1, 3]);
  let k = transpose(reshape(x @ wk, [B, S, NH, HD]), [0, 2, 3, 1]);
  let v = transpose(reshape(x @ wv, [B, S, NH, HD]), [0, 2, 1, 3]);
  let p = softmax(causal_mask(q @ k / sqrt(HD)));
  return reshape(transpose(p @ v, [0, 2, 1, 3]), [B, S, D]) @ wo;
}

layer mlp(x: f32[B, S, D]) -> f32[B, S, D] {
  param w1: f32[D, 4 * D];
  param w2: f32[4 * D, D];
  return gelu(x @ w1) @ w2;
}

layer block(x: f32[B, S, D]) -> f32[B, S, D] {
  param g1: f32[D] = ones;  param b1: f32[D] = zeros;
  param g2: f32[D] = ones;  param b2: f32[D] = zeros;
  let h = x + attention(layernorm(x, g1, b1));
  return h + mlp(layernorm(h, g2, b2));
}

model gpt(tokens: i32[B, S], labels: i32[B, S]) -> f32[] {
  param wte: f32[V, D];
  param wpe: f32[S, D];
  let x = embedding(tokens, wte) + wpe;
  for i in 0..L { x = block(x); }
  return cross_entropy(x @ transpose(wte, [1, 0]), labels);
}

train gpt optimizer adam(lr = 3e-4);
