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
