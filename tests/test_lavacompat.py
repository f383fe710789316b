"""Lava's runtime imports after tqdm resolved the multiprocessing context (demo, notebooks)."""
import subprocess
import sys

CODE = """
import multiprocessing as mp
from tqdm import tqdm
for _ in tqdm(range(1), disable=True):
    pass
assert mp.context._default_context._actual_context is not None   # tqdm resolved it
{prep}
import lava.magma.runtime.message_infrastructure.multiprocessing
print("imported")
"""


def _run(prep):
    return subprocess.run([sys.executable, "-c", CODE.format(prep=prep)], capture_output=True, text=True)


def test_plain_lava_import_fails_after_tqdm():
    r = _run("")
    assert r.returncode != 0 and "context has already been set" in r.stderr


def test_prepare_lava_fixes_it():
    r = _run("from neuromaml.lavacompat import prepare_lava; prepare_lava()")
    assert r.returncode == 0 and "imported" in r.stdout, r.stderr
