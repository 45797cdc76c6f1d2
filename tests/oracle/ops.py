"""numpy references for the tensor ops, the oracle the reference interpreter is tested against.

usage: ops.py CASES.json INPUTS.npz OUT.npz

CASES.json is a list of {"name", "op", "inputs": [keys into INPUTS.npz], "attrs": {...}}; OUT.npz gets one
array per case, keyed by its name. Float ops are computed in float64 from the float32 inputs and rounded to
float32 once at the end, so the reference is as close to the exact answer as float32 allows and any
disagreement is the interpreter's. Integer ops stay in int32 to get numpy's wrap-around and floor rules.
A case that fails here is reported on stderr and left out, so one bad case does not hide the others.
"""
import json
import sys

import numpy as np


def is_int(x):
    return x.dtype.kind in 'iu'


def f64(x):
    return np.asarray(x, dtype=np.float64)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def gelu(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def layernorm(x, g, b, eps=1e-5):
    mean = np.mean(x, axis=-1, keepdims=True)
    var = np.mean((x - mean) ** 2, axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * g + b


def rmsnorm(x, g, eps=1e-6):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * g


def causal_mask(x):
    rows, cols = x.shape[-2:]
    out = np.array(x, copy=True)
    out[..., np.triu(np.ones((rows, cols), dtype=bool), k=1)] = -np.inf
    return out


def cross_entropy(logits, labels):
    top = np.max(logits, axis=-1, keepdims=True)
    lse = np.log(np.sum(np.exp(logits - top), axis=-1)) + top[..., 0]
    picked = np.take_along_axis(logits, labels.astype(np.int64)[..., None], axis=-1)[..., 0]
    return np.mean(lse - picked)


FLOAT_UNARY = {
    'neg': np.negative, 'relu': lambda x: np.maximum(x, 0.0), 'gelu': gelu, 'silu': lambda x: x * sigmoid(x),
    'sigmoid': sigmoid, 'tanh': np.tanh, 'exp': np.exp, 'log': np.log, 'sqrt': np.sqrt,
    'rsqrt': lambda x: 1.0 / np.sqrt(x),
}
INT_UNARY = {'neg': np.negative, 'relu': lambda x: np.maximum(x, np.int32(0))}
FLOAT_BINARY = {'add': np.add, 'sub': np.subtract, 'mul': np.multiply, 'div': np.true_divide, 'rem': np.mod}
INT_BINARY = {'add': np.add, 'sub': np.subtract, 'mul': np.multiply, 'div': np.floor_divide, 'rem': np.mod}
REDUCE = {'sum': np.sum, 'mean': np.mean, 'max': np.max}


def evaluate(op, xs, attrs):
    if op in FLOAT_UNARY:
        (x,) = xs
        return INT_UNARY[op](x) if is_int(x) else FLOAT_UNARY[op](f64(x))
    if op in FLOAT_BINARY:
        a, b = xs
        return INT_BINARY[op](a, b) if is_int(a) else FLOAT_BINARY[op](f64(a), f64(b))
    if op in REDUCE:
        (x,) = xs
        # int64 accumulation then a wrapping cast is what int32 sums mean; max is exact either way.
        x = x.astype(np.int64) if is_int(x) else f64(x)
        return REDUCE[op](x, axis=tuple(attrs['axes']), keepdims=bool(attrs.get('keepdims', False)))
    if op == 'softmax':
        return softmax(f64(xs[0]), attrs['axis'])
    if op == 'layernorm':
        return layernorm(*map(f64, xs), attrs['eps'])
    if op == 'rmsnorm':
        return rmsnorm(*map(f64, xs), attrs['eps'])
    if op == 'matmul':
        a, b = xs
        return np.matmul(a, b) if is_int(a) else np.matmul(f64(a), f64(b))
    if op == 'reshape':
        return np.reshape(xs[0], attrs['shape'])
    if op == 'transpose':
        return np.transpose(xs[0], attrs['perm'])
    if op == 'broadcast':
        return np.broadcast_to(xs[0], attrs['shape'])
    if op == 'concat':
        return np.concatenate(xs, axis=attrs['axis'])
    if op == 'embedding':
        ids, table = xs
        return table[ids]
    if op == 'causal_mask':
        return causal_mask(xs[0])
    if op == 'convert':
        return xs[0].astype(np.float16)  # the cases convert f32 to f16
    if op == 'cross_entropy':
        return cross_entropy(f64(xs[0]), xs[1])
    raise ValueError(f'no numpy reference for op {op!r}')


def main(argv):
    cases_path, inputs_path, out_path = argv
    with open(cases_path, encoding='utf-8') as f:
        cases = json.load(f)
    with np.load(inputs_path) as z:
        arrays = {k: z[k] for k in z.files}
    results, failed = {}, 0
    for case in cases:
        try:
            # Division by zero, overflow and exp(-inf - -inf) are part of the semantics under test.
            with np.errstate(all='ignore'):
                r = np.asarray(evaluate(case['op'], [arrays[k] for k in case['inputs']], case.get('attrs') or {}))
            results[case['name']] = r.astype(np.int32) if is_int(r) else r.astype(np.float32)
        except Exception as e:  # noqa: BLE001 - reported per case, see the module docstring
            failed += 1
            print(f"case {case['name']}: {type(e).__name__}: {e}", file=sys.stderr)
    np.savez(out_path, **results)
    print(f'{len(results)} case(s) computed, {failed} failed')


if __name__ == '__main__':
    main(sys.argv[1:])
