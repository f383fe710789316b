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


def quiet_lava_dl() -> None:
    """Import lava-dl with its import-time notice (about an optional dataset toolbox, printed on
    stdout) sent to stderr: stdout is for results (``meta-train``'s JSON summary). Every import
    of lava-dl in neuromaml goes through here first; idempotent and cheap once imported."""
    if "lava.lib.dl.slayer" in sys.modules:
        return
    import contextlib

    with contextlib.redirect_stdout(sys.stderr):
        import lava.lib.dl.slayer  # noqa: F401


def optimize_weight_bits(weight):
    """lava-dl 0.6 netx's ``optimize_weight_bits`` (weight, bits, exponent, sign mode), also for
    an all-zero matrix, which netx's own scales by 255 / max(weight) = inf and fails on.

    A meta-trained network can legitimately start its final layer at zero (theta0* of a
    class-symmetric head; the chip's rule learns it from there). An all-zero matrix is
    returned unchanged with 8 bits, exponent 0 and the sign mode netx picks for non-negative
    weights; every other matrix goes to netx's function, whose warnings are kept.
    """
    import numpy as np

    quiet_lava_dl()
    from lava.lib.dl.netx import utils

    w = np.asarray(weight)
    if w.size and not w.any():
        return w, 8, 0, utils.SYNAPSE_SIGN_MODE.EXCITATORY
    return utils.optimize_weight_bits(weight)


def patch_netx_zero_dense() -> None:
    """Make ``netx.hdf5.Network`` use ``optimize_weight_bits`` above, so that it loads a dense
    layer whose weights are all zero. Idempotent."""
    quiet_lava_dl()
    from lava.lib.dl.netx import hdf5

    hdf5.optimize_weight_bits = optimize_weight_bits
