"""numpy versions of examples/mlp.mpl and examples/gpt.mpl, the oracle for `mplc run` on them.

usage: models.py mlp|gpt INPUTS.npz PARAMS.npz OUT.npz

INPUTS.npz is keyed by argument name, PARAMS.npz by dotted parameter path (as `mplc params` lists them) and
must hold every parameter: the initialisers are the compiler's business, not the oracle's. The result goes to
OUT.npz under "out", as `mplc run --out` writes it. Everything is computed in float64 and rounded to float32
once, so the comparison measures the interpreter's float32 error and nothing else.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ops import causal_mask, cross_entropy, gelu, layernorm, softmax  # noqa: E402

# Not recoverable from the weights' shapes: must match `const NH` in examples/gpt.mpl.
GPT_HEADS = 4


def mlp(inputs, p):
    h = gelu(inputs['x'] @ p['mlp.w1'] + p['mlp.b1'])
    return h @ p['mlp.w2']


def attention(x, p, prefix, heads):
    b, s, d = x.shape
    hd = d // heads
    q = (x @ p[prefix + 'wq']).reshape(b, s, heads, hd).transpose(0, 2, 1, 3)
    k = (x @ p[prefix + 'wk']).reshape(b, s, heads, hd).transpose(0, 2, 3, 1)
    v = (x @ p[prefix + 'wv']).reshape(b, s, heads, hd).transpose(0, 2, 1, 3)
    probs = softmax(causal_mask(q @ k / np.sqrt(hd)), axis=-1)
    return (probs @ v).transpose(0, 2, 1, 3).reshape(b, s, d) @ p[prefix + 'wo']


def block(x, p, prefix, heads):
    h = x + attention(layernorm(x, p[prefix + 'g1'], p[prefix + 'b1'], 1e-5), p, prefix + 'attention.', heads)
    return h + gelu(layernorm(h, p[prefix + 'g2'], p[prefix + 'b2'], 1e-5)
                    @ p[prefix + 'mlp.w1']) @ p[prefix + 'mlp.w2']


def gpt(inputs, p):
    wte = p['gpt.wte']
    if wte.shape[1] % GPT_HEADS:
        raise ValueError(f'model width {wte.shape[1]} is not divisible by {GPT_HEADS} heads')
    layers = len({k.split('.')[2] for k in p if k.startswith('gpt.block.')})
    x = wte[inputs['tokens']] + p['gpt.wpe']
    for i in range(layers):
        x = block(x, p, f'gpt.block.{i}.', GPT_HEADS)
    return cross_entropy(x @ wte.T, inputs['labels'])


MODELS = {'mlp': mlp, 'gpt': gpt}


def load(path):
    with np.load(path) as z:
        return {k: (z[k] if z[k].dtype.kind in 'iu' else z[k].astype(np.float64)) for k in z.files}


def main(argv):
    model, inputs_path, params_path, out_path = argv
    out = MODELS[model](load(inputs_path), load(params_path))
    np.savez(out_path, out=np.asarray(out, dtype=np.float32))


if __name__ == '__main__':
    main(sys.argv[1:])
