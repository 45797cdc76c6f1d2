// examples/classifier.mpl: a two-layer classifier trained with SGD, the batch split over dp and the hidden
// layer over tp (column- then row-parallel). `mplc run examples/classifier.mpl --steps 20` trains it.
mesh grid[dp = 2, tp = 2];

const B = 16; const D = 32; const H = 64; const C = 10;

model classifier(x: f32[B, D] shard[dp, _], labels: i32[B] shard[dp]) -> f32[] {
  param w1: f32[D, H] shard[_, tp];
  param b1: f32[H] shard[tp] = zeros;
  param w2: f32[H, C] shard[tp, _];
  return cross_entropy(relu(x @ w1 + b1) @ w2, labels);
}

train classifier optimizer sgd(lr = 0.5);
