"""A spike source for many episodes in one Lava graph.

Lava's ``RingBuffer`` source keeps its data in a Var; replacing that data between
runs (``Var.set``) goes through the runtime one element per message: 77 s for one
episode of the default network (1,024 inputs x 3,100 steps), eight times the
episode itself. ``PackedSpikeSource`` takes the binary spikes of all episodes at
construction instead, bit-packed (1/32 of the int32 buffer) as a process
parameter, and sends step ``k`` of them at Lava time step ``k + 1`` (cyclic).
"""
import numpy as np

from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


class PackedSpikeSource(AbstractProcess):
    """Binary spikes of shape ``shape`` per step from ``packed``: (steps, ceil(prod(shape) / 8))
    uint8, each row ``np.packbits`` of one step's spikes in C order."""

    def __init__(self, *, shape, packed: np.ndarray, **kwargs):
        super().__init__(shape=tuple(shape), packed=packed, **kwargs)
        self.s_out = OutPort(shape=tuple(shape))


@implements(proc=PackedSpikeSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyPackedSpikeSourceModel(PyLoihiProcessModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._packed = proc_params["packed"]
        self._shape = tuple(proc_params["shape"])
        self._n = int(np.prod(self._shape))

    def run_spk(self):
        row = self._packed[(self.time_step - 1) % self._packed.shape[0]]
        s = np.unpackbits(row, count=self._n).reshape(self._shape)
        self.s_out.send(s.astype(np.int32))
