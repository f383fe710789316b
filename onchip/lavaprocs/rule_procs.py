"""Lava Processes and fixed-point ProcessModels of the on-chip rule (Face 1).

- `SoftmaxError`: the third-factor process. Each step it reads the one-hot
  label (graded, zero when no label is presented), sends the quantized gated
  error e_q = error_q(c(t-1), label) (see `neuromaml.onchip.rule`), then
  receives the output spikes and updates the counts c; with the rule's error
  normaliser on (`RuleSpec.input_norm_offset`) it also counts the plastic
  layer's input spikes on `x_in` (and, in the rate form, the labelled steps)
  and divides the error by them (`onchip.rule.normalise_error`). Computing a softmax
  needs the whole output population: on Loihi 2 this is an embedded/CPU-side
  or a dedicated error population, not a per-neuron op.
- `ErrorModulatedLIF`: a `LearningLIF` whose model runs Lava's own
  fixed-point LIF dynamics, receives e_q on `a_third_factor_in` and sends the
  third factor y2 = third_factor_q(e_q, v_pre) on `s_out_y2` to the
  `LearningDense` (no back-propagating action potential is sent: the rule
  uses the u0 dependency, and a bAP would clip the signed y2 at 0).

Lava's compiler imports this module stand-alone: absolute imports only, no
work at import time.
"""
import numpy as np

from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.magma.core.model.py.neuron import LearningNeuronModelFixed
from lava.proc.lif.models import AbstractPyLifModelFixed
from lava.proc.lif.process import LearningLIF

from neuromaml.onchip.rule import RuleSpec, error_q, normalise_error, third_factor_q


class SoftmaxError(AbstractProcess):
    """Error (third-factor) process: e_q = gate(rint((softmax(2^g c) - label) * e_max)).

    Ports: `label_in` (O,) one-hot graded label (zeros: no label, no error),
    `s_in` (O,) output spikes, `e_out` (O,) graded error. `rule`: RuleSpec dict.
    """

    def __init__(self, *, shape, rule: dict, reset_interval: int = 0, n_inputs: int = 1, **kwargs):
        super().__init__(shape=shape, rule=rule, reset_interval=reset_interval, n_inputs=n_inputs, **kwargs)
        self.label_in = InPort(shape=shape)
        self.s_in = InPort(shape=shape)
        self.x_in = InPort(shape=(n_inputs,))     # the plastic layer's input spikes (normaliser)
        self.e_out = OutPort(shape=shape)
        self.counts = Var(shape=shape, init=0)
        self.n_in = Var(shape=(1,), init=0)
        self.m = Var(shape=(1,), init=0)           # labelled steps (the normaliser's rate form)
        self.error = Var(shape=shape, init=0)


@implements(proc=SoftmaxError, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySoftmaxErrorModelFixed(PyLoihiProcessModel):
    label_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=8)
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=1)
    e_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=8)
    x_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=1)
    counts: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    n_in: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    m: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    error: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._spec = RuleSpec.from_dict(proc_params["rule"])
        self._reset = int(proc_params.get("reset_interval", 0) or 0)

    def run_spk(self):
        if self._reset and self.time_step > 1 and (self.time_step - 1) % self._reset == 0:
            self.counts[:] = 0
            self.n_in[:] = 0
            self.m[:] = 0
        label = self.label_in.recv()
        # normalise_error returns e_q itself when the normaliser is off
        self.error[:] = normalise_error(error_q(self.counts, label, self._spec), self.n_in.astype(np.int64),
                                        self._spec, m=self.m.astype(np.int64))
        self.e_out.send(self.error.copy())
        self.counts[:] = self.counts + self.s_in.recv()
        # the rate form (input_norm_steps > 0) counts the input and the steps while a label is on
        on = 1 if not self._spec.input_norm_steps else int(np.any(label != 0))
        self.n_in[:] = self.n_in + on * self.x_in.recv().sum()
        self.m[:] = self.m + on


class ErrorModulatedLIF(LearningLIF):
    """LearningLIF that turns the graded error on `a_third_factor_in` into y2.

    Extra parameter `rule`: RuleSpec dict. Var `v_pre`: voltage before reset.
    """

    def __init__(self, *, shape, rule: dict, reset_interval: int = 0, **kwargs):
        super().__init__(shape=shape, rule=rule, reset_interval=reset_interval, **kwargs)
        self.v_pre = Var(shape=shape, init=0)


@implements(proc=ErrorModulatedLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyErrorModulatedLIFModelFixed(LearningNeuronModelFixed, AbstractPyLifModelFixed):
    """Lava's fixed-point LIF (as `PyLearningLIFModelFixed`) plus the y2 output."""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    vth: int = LavaPyType(int, np.int32, precision=17)
    v_pre: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.effective_vth = 0
        self._spec = RuleSpec.from_dict(proc_params["rule"])
        self._reset = int(proc_params.get("reset_interval", 0) or 0)

    def scale_threshold(self):
        self.effective_vth = np.left_shift(self.vth, self.vth_shift)
        self.isthrscaled = True

    def spiking_activation(self):
        return self.v > self.effective_vth

    def run_spk(self):
        a_in_data = self.a_in.recv()
        e_q = self.a_third_factor_in.recv()
        if self._reset and self.time_step > 1 and (self.time_step - 1) % self._reset == 0:
            self.u[:] = 0
            self.v[:] = 0
        self.scale_bias()
        if not self.isthrscaled:
            self.scale_threshold()
        self.subthr_dynamics(activation_in=a_in_data)
        self.v_pre[:] = self.v
        s = self.spiking_activation()
        self.reset_voltage(spike_vector=s)
        y2 = third_factor_q(e_q, self.v_pre, int(self.effective_vth), self._spec)
        self.y2[:] = y2
        self.s_out.send(s)
        self.s_out_y2.send(self.y2.copy())
