"""Result summaries as typed data: ``emulate.json`` and ``calibration.json``.

``EmulateSummary.from_dict(json)`` / ``to_dict()`` (the manifest's idiom, ``deploy.manifest``):
writers build the dataclass, readers (the demo's report, the CLI, benchmarks) use its
fields instead of ``.get()`` chains. Keys a class does not declare (a newer version's, a
benchmark's) are kept in ``extra`` and written back, so ``to_dict(from_dict(d)) == d``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from neuromaml.deploy.manifest import _Section, _Written


@dataclass
class Column(_Section):
    """One accuracy column over the same tasks: mean and std over tasks (fractions), and what
    produced it (the on-chip engine's timing and update counts, a reference's lr, ...)."""

    mean: float | None = None
    std: float | None = None
    tasks: int | None = None
    engine: str | None = None                          # on-chip columns: 'fast' | 'lava'
    fraction_synapses_updated: float | None = None
    seconds_per_episode: float | None = None
    episodes: int | None = None
    lr: float | None = None                            # float-SGD references
    lr_from: str | None = None
    agreement: dict | None = None                      # Lava column of --engine both: vs the fast engine
    extra: dict = field(default_factory=dict)
    present: frozenset = field(default_factory=frozenset, repr=False, compare=False)

    def cell(self) -> str:
        """'94.4 ± 6.4% (200 tasks)'."""
        return f"{100 * self.mean:.1f} ± {100 * self.std:.1f}% ({self.tasks} tasks)"


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _column_ok(c) -> bool:
    return (isinstance(c, Column) and _number(c.mean) and 0 <= c.mean <= 1 and _number(c.std) and _whole(c.tasks)
            and c.tasks >= 1)


def _column(d):
    return Column.from_dict(d) if isinstance(d, dict) else d


def cell(col: Column | None) -> str:
    return col.cell() if col is not None else "n/a"


@dataclass
class EmulateSummary(_Written, _Section):
    """``emulate.json``: one-shot episodes of a bundle on a meta-dataset split; every column on
    the same tasks (``onchip``: the rule on the fast engine, or on Lava with ``--engine lava``;
    ``lava``: the Lava column of ``--engine both``; ``references``: ``bundle_sgd`` (fast engine +
    float SGD of the final layer) and ``ncm`` (no learning); ``slayer``: ``float`` and
    ``fixed_sgd`` columns from the bundle's source run, with a ``note`` when there is none)."""

    bundle: str = ""
    bundle_manifest_sha256: str | None = None          # the manifest emulated (a later calibrate changes it)
    data: str = ""
    data_sha256: str | None = None                     # the file emulated (a demo reuses it only for the same data)
    no_input_spikes: bool = False
    split: str = "test"
    tasks: int = 0
    n_way: int = 0
    k_shot: int = 1
    n_query: int = 0
    seed: int = 0
    rule: dict = field(default_factory=dict)
    plastic_weight_exp: int = 0
    rule_status: str = ""
    time_steps: int = 0
    burn_in: int = 0
    classes_seen_in_training: str | None = None
    stream: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)          # what the numbers cannot be read without
    onchip: Column | None = None
    lava: Column | None = None
    references: dict = field(default_factory=dict)     # name -> Column | None
    slayer: dict = field(default_factory=dict)         # 'float', 'fixed_sgd' -> Column | None; 'note'
    package_versions: dict = field(default_factory=dict)
    outputs: dict | None = None
    extra: dict = field(default_factory=dict)
    present: frozenset = field(default_factory=frozenset, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict) -> "EmulateSummary":
        d = dict(d)
        for key in ("onchip", "lava"):
            if key in d:
                d[key] = _column(d[key])
        for key in ("references", "slayer"):
            if isinstance(d.get(key), dict):
                d[key] = {k: (_column(v) if k != "note" else v) for k, v in d[key].items()}
        return super().from_dict(d)

    def to_dict(self) -> dict:
        out = super().to_dict()
        for key in ("references", "slayer"):
            if isinstance(out.get(key), dict):
                out[key] = {k: (v.to_dict() if isinstance(v, Column) else v) for k, v in out[key].items()}
        return out

    def usable(self) -> bool:
        """Whether this summary, read back from a file, holds what its readers use (numbers where
        numbers belong): the demo re-runs emulate rather than report from a damaged or edited file."""
        try:
            cols = [self.onchip, self.lava, *self.references.values(), self.slayer.get("float"),
                    self.slayer.get("fixed_sgd")]
            if self.onchip is None or not all(c is None or _column_ok(c) for c in cols):
                return False
            if not all(_whole(v) for v in (self.tasks, self.n_way, self.k_shot, self.n_query)):
                return False
            # the report divides by n_way and names the shots: a one-shot task has 2+ classes
            if self.n_way < 2 or self.k_shot < 1 or self.n_query < 1 or self.tasks < 1:
                return False
            if not isinstance(self.split, str) or not isinstance(self.data, str):
                return False
            from neuromaml.onchip.rule import RuleError, RuleSpec

            try:
                if not isinstance(self.rule, dict):
                    return False
                RuleSpec.from_dict(self.rule)
            except RuleError:
                return False
            a = self.lava.agreement if self.lava is not None else None
            return a is None or (isinstance(a, dict) and _whole(a.get("episodes"))
                                 and all(isinstance(a.get(k), bool) for k in ("output_spikes_identical",
                                                                               "final_weights_identical"))
                                 and all(_number(a.get(k)) for k in ("lava_seconds_per_episode",
                                                                     "fast_seconds_per_episode", "speedup")))
        except (AttributeError, TypeError, KeyError, ValueError):
            return False

    @property
    def lava_agrees(self) -> bool | None:
        """True / False when Lava ran beside the fast engine (``--engine both``), else None."""
        a = self.lava.agreement if self.lava is not None else None
        if not a:
            return None
        return bool(a["output_spikes_identical"] and a["final_weights_identical"])


@dataclass
class CalibrationSummary(_Written, _Section):
    """``calibration.json``: the rule chosen for a bundle on meta-validation tasks, the sweep
    (``settings``, one dict per setting tried) and the search space it came from. The fields
    from ``data`` to ``warning`` are also the manifest's ``adapt.calibration`` record
    (``record()``)."""

    bundle: str = ""
    bundle_manifest_sha256: str | None = None          # the manifest written with this calibration
    data: str = ""
    data_sha256: str = ""
    split: str = "val"
    tasks: int = 0
    n_way: int = 0
    k_shot: int = 1
    n_query: int = 0
    seed: int = 0
    tolerance: float = 0.01
    selection: str = ""
    val_accuracy: float = 0.0
    best_val_accuracy: float = 0.0
    screen_accuracy: float | None = None               # the chosen setting's on the screening tasks
    best_screen_accuracy: float | None = None
    confirm_tasks: int = 0                             # fresh val tasks the choice was re-measured on
    confirm_seed: int | None = None
    fraction_synapses_updated: float = 0.0
    weight_exp: int = 0
    label_window: list | None = None
    settings_tried: int = 0
    sgd_reference: dict = field(default_factory=dict)
    created_utc: str = ""
    warning: str | None = None
    rule: dict = field(default_factory=dict)
    space: dict = field(default_factory=dict)
    settings: list = field(default_factory=list)
    update_magnitude: dict = field(default_factory=dict)
    seconds: float = 0.0
    package_versions: dict = field(default_factory=dict)
    outputs: dict | None = None
    extra: dict = field(default_factory=dict)
    present: frozenset = field(default_factory=frozenset, repr=False, compare=False)

    RECORD = ("data", "data_sha256", "split", "tasks", "n_way", "k_shot", "n_query", "seed", "tolerance",
              "selection", "val_accuracy", "best_val_accuracy", "screen_accuracy", "best_screen_accuracy",
              "confirm_tasks", "confirm_seed", "fraction_synapses_updated", "weight_exp",
              "label_window", "settings_tried", "sgd_reference", "created_utc", "warning")

    def record(self) -> dict:
        """What the manifest's ``adapt.calibration`` keeps: the data, the split, the choice."""
        return {k: getattr(self, k) for k in self.RECORD}


@dataclass
class RuleCheckSummary(_Written, _Section):
    """``rule-check.json``: the rule of a bundle swept over weight precision, eta and thresholds
    on the same tasks. ``settings``: one dict per point (``bits``, ``eta_exp``, thresholds,
    ``accuracy`` {mean, std, tasks}, ``fraction_synapses_updated``, ``update_magnitude``,
    ``sweeps``: the sweeps it belongs to); ``sgd``: the float-SGD reference
    (``rulecheck.sgd_reference``)."""

    bundle: str = ""
    data: str = ""
    no_input_spikes: bool = False
    split: str = "test"
    tasks: int = 0
    n_way: int = 0
    k_shot: int = 1
    n_query: int = 0
    seed: int = 0
    synapses: int = 0
    rule: dict = field(default_factory=dict)
    sweep: dict = field(default_factory=dict)          # bits, eta_exps, error_thresholds, factor_thresholds
    precision_model: str = ""
    settings: list = field(default_factory=list)
    sgd: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    package_versions: dict = field(default_factory=dict)
    outputs: dict | None = None
    extra: dict = field(default_factory=dict)
    present: frozenset = field(default_factory=frozenset, repr=False, compare=False)

    def points(self, sweep: str) -> list[dict]:
        """The settings of one sweep ('precision', 'error_threshold', 'factor_threshold',
        'no_threshold', 'bundle'); a point shared by several sweeps is the same dict."""
        return [s for s in self.settings if sweep in s["sweeps"]]


@dataclass
class DemoSummary(_Written, _Section):
    """``demo.json``: the settings a demo folder was made with (``quick``, ``seed``, ``config``,
    ``data``: the user's file and sha256, or the embedded data's recordings per class and split),
    one record per stage in ``stages`` (the stage's own summary: ``run/summary.json``, the
    bundle's export record, ``emulate.json``, ...; ``reused`` where an earlier run's was kept)
    and the seconds each stage took."""

    out: str = ""
    quick: bool = False
    seed: int = 0
    config: str | None = None
    data: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    package_versions: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    present: frozenset = field(default_factory=frozenset, repr=False, compare=False)

    def __post_init__(self):
        self.written_in_full(but=())

    def reused(self) -> list[str]:
        """The stages kept from an earlier run of the folder."""
        return [k for k, v in self.stages.items() if isinstance(v, dict) and v.get("reused")]
