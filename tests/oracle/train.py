"""numpy training of examples/classifier.mpl with hand-derived gradients: the oracle for autodiff and the optimizers.

usage: train.py INPUTS.npz PARAMS.npz OPTIMIZER STEPS OUT.npz

OPTIMIZER is "sgd:lr=0.5,momentum=0.9,weight_decay=0.01" or "adam:lr=0.01,beta1=0.9,beta2=0.999,eps=1e-8"
(PyTorch's definitions; missing settings take the language's defaults). Runs STEPS steps on the same batch, in
float64, from the parameters in PARAMS.npz (keys classifier.w1, classifier.b1, classifier.w2). OUT.npz holds
"loss" (one per step, before that step's update) and the parameters after the last step under their paths, as
`mplc run --out` and `--save-params` write them.
"""
import sys

import numpy as np


def gradients(x, labels, w1, b1, w2):
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
    return loss, [x.T @ dz1, dz1.sum(axis=0), dw2]


class Sgd:
    def __init__(self, lr, momentum=0.0, weight_decay=0.0):
        self.lr, self.momentum, self.wd, self.buf = lr, momentum, weight_decay, None

    def update(self, params, grads):
        grads = [g + self.wd * p for p, g in zip(params, grads)]
        if self.momentum:
            self.buf = grads if self.buf is None else [self.momentum * b + g for b, g in zip(self.buf, grads)]
            grads = self.buf
        return [p - self.lr * g for p, g in zip(params, grads)]


class Adam:
    def __init__(self, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps, self.t, self.m, self.v = lr, beta1, beta2, eps, 0, None, None

    def update(self, params, grads):
        self.t += 1
        if self.m is None:
            self.m, self.v = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
        self.m = [self.b1 * m + (1 - self.b1) * g for m, g in zip(self.m, grads)]
        self.v = [self.b2 * v + (1 - self.b2) * g * g for v, g in zip(self.v, grads)]
        out = []
        for p, m, v in zip(params, self.m, self.v):
            mhat, vhat = m / (1 - self.b1 ** self.t), v / (1 - self.b2 ** self.t)
            out.append(p - self.lr * mhat / (np.sqrt(vhat) + self.eps))
        return out


def optimizer(spec):
    name, _, settings = spec.partition(':')
    kwargs = {k: float(v) for k, v in (kv.split('=') for kv in settings.split(',') if kv)}
    return {'sgd': Sgd, 'adam': Adam}[name](**kwargs)


def main():
    inputs, params, opt, steps, out = (np.load(sys.argv[1]), np.load(sys.argv[2]), optimizer(sys.argv[3]),
                                       int(sys.argv[4]), sys.argv[5])
    x = inputs['x'].astype(np.float64)
    labels = inputs['labels'].astype(np.int64)
    keys = ['classifier.w1', 'classifier.b1', 'classifier.w2']
    ps = [params[k].astype(np.float64) for k in keys]
    losses = []
    for _ in range(steps):
        loss, grads = gradients(x, labels, *ps)
        ps = opt.update(ps, grads)
        losses.append(loss)
    np.savez(out, loss=np.array(losses, dtype=np.float32), **{k: p.astype(np.float32) for k, p in zip(keys, ps)})


if __name__ == '__main__':
    main()
