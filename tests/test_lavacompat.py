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


def test_lava_dl_notice_never_reaches_stdout():
    """lava-dl prints a notice on stdout when first imported; every neuromaml import of lava-dl
    goes through quiet_lava_dl, so stdout (results, JSON summaries) stays clean."""
    import subprocess
    import sys

    raw = subprocess.run([sys.executable, "-c", "import lava.lib.dl.slayer"], capture_output=True, text=True)
    ours = subprocess.run([sys.executable, "-c", "from neuromaml.meta.models import ModelConfig, build_model; "
                           "build_model(ModelConfig(name='small', hidden=[8], time_steps=4, burn_in=2), seed=0); "
                           "from neuromaml.deploy.lava_run import netx_network"], capture_output=True, text=True)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == ""
    if raw.stdout:                          # where lava-dl prints its notice, ours sent it to stderr
        assert raw.stdout.strip().splitlines()[0] in ours.stderr
