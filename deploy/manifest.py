"""A bundle's manifest as typed data: ``Manifest.from_dict(json)`` / ``to_dict()`` (NIR's and
``RuleSpec``'s idiom), so readers use fields, not ``.get()`` chains.

``to_dict(from_dict(d)) == d`` for every manifest: keys a section does not declare (written by
another version, or by a command adding a record) are kept in that section's ``extra`` and
written back, so the digest (``deploy.bundle.manifest_digest``) of an unchanged manifest stays
the same. The checks of the values themselves stay in ``deploy.bundle.load_bundle``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _declared(cls) -> list:
    return [f for f in dataclasses.fields(cls) if f.name not in ("extra", "present")]


def _default(f):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


class _Section:
    """from_dict/to_dict for a flat section: declared fields, the rest in ``extra``. A declared
    field the dict did not hold is written back only once it is set to something else than its
    default (``present`` remembers which keys were there)."""

    extra: dict
    present: frozenset

    @classmethod
    def from_dict(cls, d: dict | None):
        d = dict(d or {})
        names = {f.name for f in _declared(cls)}
        obj = cls(**{k: v for k, v in d.items() if k in names},
                  extra={k: v for k, v in d.items() if k not in names})
        obj.present = frozenset(k for k in d if k in names)
        return obj

    def set(self, **values) -> None:
        """Set declared fields and write them even where they equal the default."""
        names = {f.name for f in _declared(self)}
        for k, v in values.items():
            if k not in names:
                raise AttributeError(f"{type(self).__name__} has no field {k!r}")
            setattr(self, k, v)
        self.present = frozenset(self.present | set(values))

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in _declared(self):
            v = getattr(self, f.name)
            if f.name in self.present or v != _default(f):
                out[f.name] = v.to_dict() if isinstance(v, _Section) else v
        return {**out, **self.extra}


class _Written:
    """For a result summary (a ``_Section``) whose keys do not depend on its values."""

    def written_in_full(self, but=("outputs", "lava")) -> None:
        """Write every declared field, except those in ``but`` where unset."""
        names = {f.name for f in _declared(self)}
        self.present = frozenset(n for n in names if n not in but or getattr(self, n) is not None)


@dataclass
class InputSpec(_Section):
    """What the network takes: frames (C, H, W) = ``shape_chw`` over ``time_steps`` steps of
    ``dt_ms``; Lava's order is (x, y, f) = ``shape_xyf``."""

    shape_chw: list | None = None
    shape_xyf: list | None = None
    time_steps: int = 0
    dt_ms: int = 1
    order: str = "xyf"
    slayer_frames: str = ""
    lava_input: str = ""
    extra: dict = field(default_factory=dict)
    present: frozenset = field(default_factory=frozenset, repr=False, compare=False)


@dataclass
class OutputSpec(_Section):
    """What it gives: ``neurons`` output neurons read by spike count over [burn_in, T)."""

    neurons: int | None = None
    classes: list | None = None
    burn_in: int = 0
    labels: str = ""
    readout: str = ""
    extra: dict = field(default_factory=dict)
    present: frozenset = field(default_factory=frozenset, repr=False, compare=False)


@dataclass
class AdaptSpec(_Section):
    """The plastic layer and its rule (``RuleSpec.to_dict()``), and how the rule was chosen."""

    layer: int | None = None
    engine_layer: int | None = None
    kind: str = "dense"
    rule: dict = field(default_factory=dict)
    rule_source: str | None = None          # 'trained' | 'calibrated' | None (the default rule)
    weight_exp: int = 0
    label_window: list | None = None
    calibration: dict | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)
    present: frozenset = field(default_factory=frozenset, repr=False, compare=False)


@dataclass
class Manifest(_Section):
    """``manifest.json`` of a bundle (the format in ``deploy.bundle``)."""

    format: str = ""
    format_version: int = 0
    input: InputSpec = field(default_factory=InputSpec)
    output: OutputSpec = field(default_factory=OutputSpec)
    adapt: AdaptSpec = field(default_factory=AdaptSpec)
    layers: list = field(default_factory=list)
    lowered: list = field(default_factory=list)
    quantization: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    source_run: str | None = None
    created_utc: str | None = None
    package_versions: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)   # model_config, fresh_init_seed, imported_from, digests, ...
    present: frozenset = field(default_factory=frozenset, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        d = dict(d)
        for name, sec in (("input", InputSpec), ("output", OutputSpec), ("adapt", AdaptSpec)):
            if isinstance(d.get(name), dict):
                d[name] = sec.from_dict(d[name])
        return super().from_dict(d)

    # what readers ask most
    @property
    def time_steps(self) -> int:
        return int(self.input.time_steps)

    @property
    def burn_in(self) -> int:
        return int(self.output.burn_in)

    @property
    def calibration(self) -> dict:
        return self.adapt.calibration or {}
