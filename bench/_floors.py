"""Measured floors: the BLAS calls a job must make, timed alone with numpy's OpenBLAS."""

from __future__ import annotations

import numpy as np


def recurrent_blas_floor(W, U, xs, weight_grads=True):
    """The GEMM calls that any per-step implementation of the pass must make, timed alone
    by the caller (numpy's OpenBLAS, all its threads): the input products of all steps in
    one call, one h W^T per step forward and one dz W per step backward, and (with weight
    gradients) dW and dU as one call each over all steps. Returns the function to time."""
    T, B, m = xs.shape
    G = W.shape[0]
    x_all = np.ascontiguousarray(xs.reshape(T * B, m))
    rng = np.random.default_rng(0)
    h_all = rng.standard_normal((T * B, W.shape[1])).astype(W.dtype)
    dz_all = rng.standard_normal((T * B, G)).astype(W.dtype)
    z_all = np.empty((T * B, G), W.dtype)
    gh = np.empty((B, W.shape[1]), W.dtype)
    dW, dU = np.empty_like(W), np.empty_like(U)
    Wt, Ut = W.T, U.T

    def run():
        np.matmul(x_all, Ut, out=z_all)
        for t in range(T):
            np.matmul(h_all[t * B:(t + 1) * B], Wt, out=z_all[t * B:(t + 1) * B])
        for t in range(T - 1, -1, -1):
            np.matmul(dz_all[t * B:(t + 1) * B], W, out=gh)
        if weight_grads:
            np.matmul(dz_all.T, h_all, out=dW)
            np.matmul(dz_all.T, x_all, out=dU)

    return run


def train_blas_floor(weights, x, batch, epochs):
    """The GEMM calls of `epochs` epochs of SGD on a chain, alone (numpy's OpenBLAS, all
    its threads): per minibatch and layer h W^T forward, dz W and dz^T h backward.
    Returns the function to time: the largest speed-up over numpy or torch that
    per-layer BLAS calls allow is their time over this one."""
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((batch, x.shape[1])).astype(x.dtype)
    hs = [rows] + [np.empty((batch, w.shape[0]), x.dtype) for w in weights]
    g = [np.empty((batch, w.shape[1]), x.dtype) for w in weights]
    dws = [np.empty_like(w) for w in weights]

    def run():
        for _ in range(epochs * (len(x) // batch)):
            for l, w in enumerate(weights):
                np.matmul(hs[l], w.T, out=hs[l + 1])
            for l in range(len(weights) - 1, -1, -1):
                np.matmul(hs[l + 1].T, hs[l], out=dws[l])
                np.matmul(hs[l + 1], weights[l], out=g[l])

    return run
