"""Import Lava's runtime safely in a process that already used multiprocessing.

Lava 0.10 calls ``multiprocessing.set_start_method('fork')`` when its runtime is
first imported (``lava/magma/runtime/message_infrastructure/multiprocessing.py``).
That call raises ``RuntimeError: context has already been set`` once anything
resolved the default context, and tqdm does so on its first progress bar (its
write lock is a multiprocessing RLock). So ``neuromaml meta-train`` followed by
``export``/``verify``/``emulate`` in one process (the demo, a notebook, a test
session) would fail. ``prepare_lava()`` imports the runtime first; if the
default context was already resolved to ``fork`` (the same method Lava sets) it
is cleared so that Lava's call succeeds. Any other method is a real conflict and
raises with the fix.
"""
from __future__ import annotations

import sys

_LAVA_MP = "lava.magma.runtime.message_infrastructure.multiprocessing"


def prepare_lava() -> None:
    if _LAVA_MP in sys.modules:
        return
    import multiprocessing as mp

    default = mp.context._default_context      # the module-level DefaultContext
    actual = default._actual_context
    if actual is not None:
        if actual.get_start_method() != "fork":
            raise RuntimeError(
                f"multiprocessing start method is already {actual.get_start_method()!r}; Lava 0.10 "
                "needs 'fork' (fix: import neuromaml.deploy or lava before setting a start method)")
        default._actual_context = None
    __import__(_LAVA_MP)


def patch_netx_zero_dense() -> None:
    """Let lava-dl 0.6's netx load a dense layer whose weights are all zero.

    netx's ``optimize_weight_bits`` scales by 255 / max(weight), which is infinite for an
    all-zero matrix, and ``netx.hdf5.Network`` then fails (OverflowError). A meta-trained
    network can legitimately start its final layer at zero (theta0* of a class-symmetric
    head; the chip's rule learns it from there), so this wraps the function as imported by
    ``netx.hdf5``: an all-zero matrix is returned unchanged with 8 bits, exponent 0 and the
    sign mode netx picks for non-negative weights (what ``deploy.fixed`` computes too), and
    every other matrix goes to netx's own function. Idempotent.
    """
    import numpy as np
    from lava.lib.dl.netx import hdf5, utils

    if getattr(hdf5.optimize_weight_bits, "_neuromaml_zero_dense", False):
        return
    original = utils.optimize_weight_bits

    def optimize_weight_bits(weight):
        w = np.asarray(weight)
        if w.size and not w.any():
            return w, 8, 0, utils.SYNAPSE_SIGN_MODE.EXCITATORY
        return original(weight)

    optimize_weight_bits._neuromaml_zero_dense = True
    hdf5.optimize_weight_bits = optimize_weight_bits
