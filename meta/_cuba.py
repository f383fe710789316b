"""Compiled exact CUBA recurrence (numba) for ``meta.slayer_neuron.cuba_exact``.

slayer's CPU neuron, in integers: with ``a_i = 4096 - d_i``, ``a_v = 4096 - d_v``,

    i[t] = rshift0(i[t-1] * a_i, 12) + trunc(4096 * z[t])
    v[t] = rshift0(v[t-1] * a_v, 12) + i[t]
    s[t] = v[t] > theta ;  v[t] <- 0 where s[t]

(``rshift0`` rounds toward zero). Outputs ``v[t] / 4096`` before reset (float32,
the same int64 -> float32 rounding as torch's ``.to``) and ``s[t]``. Each neuron's
time series is one contiguous row; rows are split across threads (``prange``).
Compiled on first use and cached next to this file.
"""
from __future__ import annotations

import os

import numba
import numpy as np

# numba's "omp" layer (its default where GNU OpenMP is found) deadlocked in the two-process
# gloo test (tests/test_train.py): two OpenMP runtimes (numba's and torch's) in one process
# beside gloo's threads. The kernel's coarse prange needs only numba's own thread pool, which is
# as fast here (0.20 s vs 0.22 s for 45 M neuron-steps). A user's NUMBA_THREADING_LAYER wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"


@numba.njit(parallel=True, cache=True, nogil=True)
def cuba_kernel(z, a_i, a_v, theta, volt, spk):  # pragma: no cover - compiled
    rows, T = z.shape
    inv = np.float32(1.0 / 4096.0)
    for r in numba.prange(rows):
        cur = np.int64(0)
        vol = np.int64(0)
        for t in range(T):
            x = cur * a_i
            cur = (x >> 12) if x >= 0 else -((-x) >> 12)
            cur += np.int64(np.float32(4096.0) * z[r, t])
            y = vol * a_v
            vol = (y >> 12) if y >= 0 else -((-y) >> 12)
            vol += cur
            volt[r, t] = np.float32(vol) * inv
            if vol > theta:
                spk[r, t] = 1.0
                vol = 0
            else:
                spk[r, t] = 0.0
