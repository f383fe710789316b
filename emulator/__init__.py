"""neuromaml.emulator"""
from neuromaml.lavacompat import prepare_lava as _prepare_lava

_prepare_lava()   # Lava's runtime must be imported before anything resolves multiprocessing
