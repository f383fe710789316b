"""neuromaml: meta-learned spiking networks, from surrogate-gradient MAML to
one-shot on-chip learning on Loihi through Lava, checkable on a CPU.

The top-level folders of the repository are the subpackages:

=============  ======================  ===========================================
folder         import                  role
=============  ======================  ===========================================
``meta/``      ``neuromaml.meta``      event data, meta-datasets, SNN models, MAML
``deploy/``    ``neuromaml.deploy``    quantize, export to netx/NIR, verify on Lava
``onchip/``    ``neuromaml.onchip``    the three-factor plasticity rule (3 faces)
``emulator/``  ``neuromaml.emulator``  episodes of on-chip learning on Lava's CPU
``neuromaml/`` ``neuromaml``           the ``neuromaml`` CLI and shared I/O helpers
=============  ======================  ===========================================
"""

__version__ = "0.1.0"
