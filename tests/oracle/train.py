"""numpy training of examples/classifier.mpl with hand-derived gradients: the oracle for autodiff and sgd.

usage: train.py INPUTS.npz PARAMS.npz LR STEPS OUT.npz

Runs STEPS steps of plain SGD on the same batch, in float64, from the parameters in PARAMS.npz (keys
classifier.w1, classifier.b1, classifier.w2). OUT.npz holds "loss" (one per step, before that step's update)
and the parameters after the last step under their paths, as `mplc run --out` and `--save-params` write them.
"""
import sys

import numpy as np


def step(x, labels, w1, b1, w2, lr):
    n = x.shape[0]
    z1 = x @ w1 + b1
    h = np.maximum(z1, 0)
    logits = h @ w2
    shifted = logits - logits.max(axis=-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    loss = -logp[np.arange(n), labels].mean()
    # d loss / d logits = (softmax - onehot) / n, then back through the two layers by hand.
    dlogits = np.exp(logp)
    dlogits[np.arange(n), labels] -= 1
    dlogits /= n
    dw2 = h.T @ dlogits
    dz1 = (dlogits @ w2.T) * (z1 > 0)
    dw1 = x.T @ dz1
    db1 = dz1.sum(axis=0)
    return loss, w1 - lr * dw1, b1 - lr * db1, w2 - lr * dw2


def main():
    inputs, params, lr, steps, out = np.load(sys.argv[1]), np.load(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    x = inputs['x'].astype(np.float64)
    labels = inputs['labels'].astype(np.int64)
    w1, b1, w2 = (params['classifier.' + k].astype(np.float64) for k in ('w1', 'b1', 'w2'))
    losses = []
    for _ in range(steps):
        loss, w1, b1, w2 = step(x, labels, w1, b1, w2, lr)
        losses.append(loss)
    np.savez(out, loss=np.array(losses, dtype=np.float32), **{'classifier.w1': w1.astype(np.float32),
             'classifier.b1': b1.astype(np.float32), 'classifier.w2': w2.astype(np.float32)})


if __name__ == '__main__':
    main()
