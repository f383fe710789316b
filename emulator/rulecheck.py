"""`neuromaml rule-check`: will my rule still learn on the chip?

Sweeps the on-chip rule of a bundle on meta-test tasks with the fast
fixed-point engine (the same tasks as ``neuromaml emulate``:
``TaskSampler(..., disjoint_parts=True)``, task ``i`` a pure function of
``(seed, i)``) and compares it with float SGD of the same final layer.

Weight precision model (``bits`` = b, 1..8)
-------------------------------------------
Weights are in Lava weight units (LSB of the 8-bit Dense ``weights`` Var, the
units the rule works in). A b-bit plastic synapse keeps b magnitude bits plus
the sign on the same scale (Lava's learning-weight convention: at b = 8,
``W_WEIGHTS_U = 8`` gives -256..255 in steps of 1)::

    q_b  = 2^(8 - b)                             grid step, weight LSB
    G_b  = {k q_b : k integer} within [-256, 256 - q_b]

* initial weights: ``w_0 = round_half_up(trunc8(theta0*) / q_b) q_b`` clipped to
  G_b, where trunc8 is Lava's first-step truncation for ``num_weight_bits = 8``
  (low bit cleared). Rounding to nearest is what an exporter writing b-bit
  weights would do; the per-layer weight exponent is NOT re-chosen for b bits
  (dropping LSBs at a fixed scale, as Loihi's ``numWeightBits`` does).
* learning: each step the engine forms the same accumulator as
  ``onchip.rule.weight_update`` (``acc = clip(w 128 + clip(((-x1 y2) >> 3)
  << (eta_exp + 10)))``, LSB = 2^-7 weight LSB) and rounds it stochastically
  to the grid with the engine's shared random number r_w:
  ``w' = q_b (floor(acc / (128 q_b)) + [frac(acc / (128 q_b)) > floor(r_w 128 q_b) / (128 q_b)])``
  clipped to G_b. This keeps the expected update (``E[w'] = acc / 128``) as
  hardware with b-bit synapses and stochastic rounding does (Loihi 1 rounds
  learned weights to its weight precision this way). At b = 8, q = 1 and this
  is exactly the Lava 0.10 engine, so the 8-bit sweep point equals
  ``emulator.episodes.run_fast`` bit for bit (pinned by tests).
* Lava 0.10 itself models b-bit weights only at the start: ``num_weight_bits``
  truncates the initial weights (MIXED sign: low ``9 - b`` bits cleared) and
  learned weights are then kept at 1 LSB within -256..255. That is not a
  b-bit synapse once learning starts, hence the model above.

Float SGD reference (Fig. 5 of Stewart & Neftci 2022)
-----------------------------------------------------
The same final layer learns with float SGD: float weights (start: trunc8(theta0*),
the same start as the 8-bit rule), a float CUBA output neuron
(``onchip.neuron.cuba_step``: the integer neuron's decays, truncated, with the
fast-sigmoid surrogate ``ds/dv = 1/(1 + beta|z|)^2 / theta``, ``z = (v - theta) / theta``,
``beta`` = the rule's ``surrogate_beta``), driven by the same frozen features
the rule sees (each sample isolated, the neuron reset at its window start, as
in the episode stream). Loss: ``CE(logit_scale * c, label)``, c = spike count
over the readout window ``[burn_in, T)`` (window-relative steps
``[burn_in - D, T - D)``, D = the plastic layer's delay depth), averaged over
the support samples; ``steps`` full-batch steps ``W <- W - lr dL/dW`` (W in
the weight LSB of network.net, lr in LSB^2 per unit loss gradient; on a plastic layer
held at weight exponent -k the chip's weights are 2^k W, and updates are reported in
the chip's LSB as the rule's are). lr is picked from a small
grid by mean query accuracy over the tasks (an optimistic reference: the
choice sees the query labels) and all grid points are reported.

Outputs (``out``, default ``BUNDLE/rule-check``): ``rule-check.json``,
``rule-check.md``, ``accuracy-vs-bits.png`` (one line per eta exponent, SGD as
a band), ``accuracy-vs-threshold.png`` and ``update-histogram.png`` (|w_end -
w_start| per synapse, log-log, rule with and without threshold vs SGD).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from neuromaml.emulator.deployed import DeployedNet
from neuromaml.emulator.episodes import EpisodeBatch, run_fast
from neuromaml.emulator.results import RuleCheckSummary
from neuromaml.io import atomic_path, atomic_write_text, fail, package_versions, write_json
from neuromaml.onchip.fixed_rule import truncate_initial
from neuromaml.onchip.rule import RuleError, RuleSpec, grid_step

DEFAULT_BITS = (8, 6, 4, 3, 2)
DEFAULT_SGD_LRS = (4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0)
DEFAULT_LOGIT_SCALE = 0.5          # meta.models.ModelConfig.logit_scale default
MAX_SETTINGS = 2_000                # a sweep larger than this is a typo, not a question
MAX_EPISODES = 2_000_000            # settings x tasks
HIST_EDGES = 2.0 ** np.arange(-10, 10)      # |dw| bins, weight LSB (below / above: end bins)


# --------------------------------------------------------------------------- float SGD
def _window_inputs(dep: DeployedNet, feats: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(B, S) pool rows -> (B, S, T, I) plastic-layer input of each sample's window:
    the neuron's synaptic input at window step j is W @ feats[row, D_{L-1} + j]."""
    D1 = dep.depth - 1
    return feats[rows, D1:D1 + dep.time_steps].astype(np.float64)


def float_counts(dep: DeployedNet, W, x, beta: float):
    """Readout counts (..., S, O) of a float final layer W (..., O, I) on inputs x (..., S, T, I).

    Per isolated sample: neuron state zero at window start, a(j) = W x(j) (weight_exp 0),
    ``onchip.neuron.cuba_step`` for j < T - D, counts over j in [burn_in - D, T - D).
    """
    import torch

    from neuromaml.onchip.neuron import CubaState, cuba_step

    T, D = dep.time_steps, dep.depth
    a_all = torch.einsum("...oi,...sti->...sto", W, x) * float(2.0 ** dep.weight_exp)
    z = torch.zeros(a_all.shape[:-2] + a_all.shape[-1:], dtype=a_all.dtype)
    state, counts = CubaState(z, z), z
    for j in range(T - D):
        s, _, state = cuba_step(a_all[..., j, :], state, dep.neuron, surrogate_beta=beta)
        if j >= dep.burn_in - D:
            counts = counts + s
    return counts


def sgd_reference(dep: DeployedNet, feats: np.ndarray, batch: EpisodeBatch, *,
                  lrs: Sequence[float] = DEFAULT_SGD_LRS, steps: int = 1,
                  logit_scale: float = 0.5, beta: float | None = None) -> dict:
    """Float final-layer SGD on the same episodes for every lr of the grid (module docstring)."""
    import torch

    t0 = time.perf_counter()
    beta = float(dep.rule.surrogate_beta if beta is None else beta)
    ns = batch.n_support
    xs = torch.from_numpy(_window_inputs(dep, feats, batch.order[:, :ns]))
    xq = torch.from_numpy(_window_inputs(dep, feats, batch.order[:, ns:]))
    ys = torch.from_numpy(batch.labels[:, :ns].astype(np.int64))
    yq = batch.labels[:, ns:]
    B = batch.order.shape[0]
    w0 = torch.from_numpy(truncate_initial(dep.w0, dep.num_weight_bits).astype(np.float64))
    # lrs are in stored-weight units (LSB^2 of network.net's weights); the chip holds them
    # scaled by 2^k (weight_exp -k), where the same step is 4^k times the lr
    lr = torch.tensor([float(v) * 4.0 ** (-dep.weight_exp) for v in lrs], dtype=torch.float64)
    R = lr.numel()
    W = w0.expand(R, B, *w0.shape).clone()
    for _ in range(int(steps)):
        W.requires_grad_(True)
        c = float_counts(dep, W, xs.unsqueeze(0), beta)                  # (R, B, S, O)
        logits = c * logit_scale
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), ys.unsqueeze(0).expand(R, B, ns).reshape(-1),
            reduction="none").reshape(R, B, ns).mean(dim=2).sum()     # per-episode mean
        (g,) = torch.autograd.grad(loss, W)
        W = (W - lr[:, None, None, None] * g).detach()
    with torch.no_grad():
        cq = float_counts(dep, W, xq.unsqueeze(0), beta).numpy()
    pred = cq.argmax(axis=-1)                                            # first index on ties
    acc = (pred == yq[None]).mean(axis=2)                                # (R, B)
    dw = (W - w0).abs().numpy()                                          # the chip's weight LSB
    per_lr = [{"lr": float(lrs[r]), "accuracy": _mean_std(acc[r]),
               "fraction_synapses_updated": float((dw[r] > 0).reshape(B, -1).mean(axis=1).mean())}
              for r in range(R)]
    best = int(np.argmax(acc.mean(axis=1)))                              # first best on ties
    return {"lr": float(lrs[best]), "steps": int(steps), "logit_scale": float(logit_scale),
            "surrogate_beta": beta, "accuracy": _mean_std(acc[best]),
            "fraction_synapses_updated": per_lr[best]["fraction_synapses_updated"],
            "update_magnitude": magnitude_stats(dw[best]), "per_lr": per_lr,
            "seconds": time.perf_counter() - t0,
            "note": "lr picked from the grid by mean query accuracy (optimistic reference)"
                    + ("; the best lr is at the edge of the grid: extend the grid"
                       if R > 1 and best in (0, R - 1) else "")}


# --------------------------------------------------------------------------- sweep
def _mean_std(acc) -> dict:
    acc = np.asarray(acc, float)
    return {"mean": float(acc.mean()), "std": float(acc.std()), "tasks": int(acc.size)}


def magnitude_stats(dw: np.ndarray) -> dict:
    """|w_end - w_start| (weight LSB) of all synapses of all episodes -> summary + log histogram."""
    m = np.abs(np.asarray(dw, np.float64)).ravel()
    nz = m[m > 0]
    clipped = np.clip(nz, HIST_EDGES[0], HIST_EDGES[-1] * 0.999999)
    counts, _ = np.histogram(clipped, bins=HIST_EDGES)
    return {"synapses": int(m.size), "zero_fraction": float((m == 0).mean()) if m.size else 1.0,
            "mean": float(m.mean()) if m.size else 0.0, "max": float(m.max()) if m.size else 0.0,
            "mean_nonzero": float(nz.mean()) if nz.size else 0.0,
            "hist": {"edges": HIST_EDGES.tolist(), "counts": counts.tolist(),
                     "note": "nonzero |dw| only; values outside the edges in the end bins"}}


def _run_logit_scale(manifest) -> tuple[float, str]:
    from neuromaml.deploy.bundle import as_dict

    run = as_dict(manifest).get("source_run")
    cfg = Path(run) / "config.yaml" if run else None
    if cfg is not None and cfg.is_file():
        import yaml

        try:
            val = float((yaml.safe_load(cfg.read_text()) or {})["model"]["logit_scale"])
            return val, str(cfg)
        except (KeyError, TypeError, ValueError, yaml.YAMLError):
            pass
    return DEFAULT_LOGIT_SCALE, "default (no source run config)"


def _spec_with(base: RuleSpec, option: str, **changes) -> RuleSpec:
    try:
        return dataclasses.replace(base, **changes)
    except RuleError as exc:
        (name, val), = changes.items()
        raise fail(None, f"{option} {val}: {exc}",
                   f"pass {option} values inside that range (the bundle's rule: {name}="
                   f"{getattr(base, name)})") from None


def _uniq(vals: Iterable[int]) -> list[int]:
    out = []
    for v in vals:
        if v not in out:
            out.append(int(v))
    return out


def default_etas(spec: RuleSpec) -> list[int]:
    return [e for e in range(spec.eta_exp - 2, spec.eta_exp + 3) if -10 <= e <= 5]


def default_error_thresholds(spec: RuleSpec) -> list[int]:
    t = spec.error_threshold
    return sorted(v for v in set([0, t - 16, t - 8, t, t + 8, t + 16, t + 32]) if 0 <= v <= spec.e_max - 1)


def default_factor_thresholds(spec: RuleSpec) -> list[int]:
    f = spec.factor_threshold
    return sorted(v for v in set([0, f, f + 2, f + 4, f + 8]) if 0 <= v <= 126)


def _check_bits(bits) -> list[int]:
    bits = list(DEFAULT_BITS if bits is None else bits)
    if not bits:
        raise fail(None, "--bits is empty", "pass e.g. --bits 8,6,4,3,2")
    for b in bits:
        if isinstance(b, bool) or int(b) != b or not 1 <= b <= 8:
            raise fail(None, f"--bits {b}: weight precision must be an integer number of bits in 1..8 "
                       f"(nearest representable value: {int(np.clip(round(float(b)), 1, 8))})",
                       "pass e.g. --bits 8,6,4,3,2")
    return sorted(_uniq(bits), reverse=True)


def rule_check(bundle, data, *, split: str = "test", tasks: int = 50, shots: int = 1, queries: int = 5,
               bits: Sequence[int] | None = None, eta_exps: Sequence[int] | None = None,
               thresholds: Sequence[int] | None = None, factor_thresholds: Sequence[int] | None = None,
               seed: int = 0, out: Path | None = None, sgd_lrs: Sequence[float] = DEFAULT_SGD_LRS,
               sgd_steps: int = 1, logit_scale: float | None = None, plots: bool = True,
               progress: bool = False) -> RuleCheckSummary:
    """Run the sweep, write JSON / Markdown / PNGs into ``out``; return the summary.

    Settings (each on the same ``tasks`` episodes): bits x eta_exps at the bundle's
    thresholds; error thresholds (``thresholds``) and factor thresholds at 8 bits and the
    bundle's eta; the rule with both thresholds 0 at 8 bits (Fig. 5 'without threshold').
    ``logit_scale`` of the SGD loss: None = the source run's ``model.logit_scale``
    (``config.yaml``) when the bundle names one, else 0.5 (ModelConfig's default).
    """
    from neuromaml.emulator.emulate import build_batch, pool_inputs
    from neuromaml.meta.metadataset import MetaDataset
    from neuromaml.meta.tasks import TaskSampler

    bits = _check_bits(bits)
    if isinstance(tasks, bool) or int(tasks) != tasks or tasks < 1:
        raise fail(None, f"--tasks {tasks}: need at least one task", "pass --tasks 1 or more")
    if int(sgd_steps) < 1 or not list(sgd_lrs):
        raise fail(None, f"SGD reference: steps={sgd_steps}, lrs={list(sgd_lrs)}",
                   "use steps >= 1 and a non-empty lr grid")
    dep = DeployedNet.load(bundle)
    base = dep.rule
    etas = _uniq(default_etas(base) if eta_exps is None else eta_exps)
    errs = _uniq(default_error_thresholds(base) if thresholds is None else thresholds)
    facs = _uniq(default_factor_thresholds(base) if factor_thresholds is None else factor_thresholds)
    eta_specs = [_spec_with(base, "--eta-exp", eta_exp=e) for e in etas]
    err_specs = [_spec_with(base, "--thresholds", error_threshold=t) for t in errs]
    fac_specs = [_spec_with(base, "factor_thresholds", factor_threshold=t) for t in facs]
    none_spec = dataclasses.replace(base, error_threshold=0, factor_threshold=0, eq6_threshold=0)
    n_settings = len(bits) * len(eta_specs) + len(err_specs) + len(fac_specs) + 2
    if n_settings > MAX_SETTINGS or n_settings * int(tasks) > MAX_EPISODES:
        raise fail(None, f"the sweep asks for {n_settings:,} settings x {int(tasks):,} tasks = "
                   f"{n_settings * int(tasks):,} episodes (at most {MAX_SETTINGS:,} settings and "
                   f"{MAX_EPISODES:,} episodes)", "sweep fewer --bits, --eta-exp or --thresholds values, or fewer --tasks")

    ds = MetaDataset(data)
    C, H, W, T = ds.shape
    dep.check_frames(np.zeros((1, C, H, W, T)), data)
    sampler = TaskSampler(ds, split, dep.n_out, shots, queries, seed=seed, disjoint_parts=True)
    batch, pool = build_batch(sampler, int(tasks))
    t0 = time.perf_counter()
    feats = dep.frozen_features(pool_inputs(ds, pool))
    silent = dep.note_if_silent(feats, data)
    t_feats = time.perf_counter() - t0

    runs: dict = {}            # (bits, spec) -> setting dict (each computed once)

    def point(b: int, spec: RuleSpec, sweep: str) -> dict:
        key = (b, spec)
        if key not in runs:
            r = run_fast(dep, feats, batch, spec, bits=b)
            frac = r.n_updates / r.weights[0].size
            runs[key] = {"bits": b, "grid_step": grid_step(b), "eta_exp": spec.eta_exp,
                         "error_threshold": spec.error_threshold,
                         "factor_threshold": spec.factor_threshold, "eq6_threshold": spec.eq6_threshold,
                         "accuracy": _mean_std(r.accuracy),
                         "fraction_synapses_updated": float(frac.mean()),
                         "update_magnitude": magnitude_stats(r.weights - r.initial),
                         "seconds": r.seconds, "sweeps": []}
        if sweep not in runs[key]["sweeps"]:
            runs[key]["sweeps"].append(sweep)
        return runs[key]

    from tqdm import tqdm

    plan = ([(b, s, "precision") for b in bits for s in eta_specs] + [(8, s, "error_threshold") for s in err_specs]
            + [(8, s, "factor_threshold") for s in fac_specs] + [(8, none_spec, "no_threshold"), (8, base, "bundle")])
    for b, s, sweep in tqdm(plan, desc="rule-check", unit="setting", disable=not progress):
        point(b, s, sweep)
    if logit_scale is None:
        logit_scale, ls_from = _run_logit_scale(dep.manifest)
    else:
        ls_from = "argument"
    sgd = sgd_reference(dep, feats, batch, lrs=sgd_lrs, steps=sgd_steps, logit_scale=logit_scale)
    sgd["logit_scale_from"] = ls_from

    settings = list(runs.values())
    secs = [s["seconds"] for s in settings]
    summary = RuleCheckSummary(
        bundle=str(bundle), data=str(data), no_input_spikes=silent, split=split, tasks=int(tasks),
        n_way=dep.n_out, k_shot=shots, n_query=queries, seed=seed, synapses=int(dep.w0.size), rule=base.to_dict(),
        sweep={"bits": bits, "eta_exps": etas, "error_thresholds": errs, "factor_thresholds": facs},
        precision_model="b magnitude bits + sign: grid step 2^(8-b) weight LSB on the 8-bit "
                        "scale; initial weights (after Lava's 8-bit truncation) rounded to "
                        "nearest; every learning step stochastically rounded to the grid with "
                        "the engine's random r_w. Lava 0.10 itself only truncates the initial "
                        "weights (num_weight_bits) and learns at 1 LSB.",
        settings=settings, sgd=sgd,
        timing={"seconds_frozen_features": t_feats, "sweep_points": len(settings),
                "seconds_per_point_mean": float(np.mean(secs)), "seconds_per_point_max": float(np.max(secs)),
                "seconds_per_episode": float(np.mean(secs)) / int(tasks), "seconds_sgd": sgd["seconds"]},
        package_versions=package_versions())
    summary.written_in_full()
    out = Path(out) if out is not None else Path(bundle) / "rule-check"
    out.mkdir(parents=True, exist_ok=True)
    outputs = {"json": str(out / "rule-check.json"), "markdown": str(out / "rule-check.md")}
    if plots:
        outputs.update(write_plots(summary, out))
    summary.outputs = outputs
    write_json(out / "rule-check.json", summary.to_dict())
    atomic_write_text(out / "rule-check.md", format_markdown(summary))
    return summary


# --------------------------------------------------------------------------- reports
def _pct(ms: dict) -> str:
    return f"{100 * ms['mean']:.1f} ± {100 * ms['std']:.1f}%"


def format_markdown(s: RuleCheckSummary) -> str:
    sgd = s.sgd
    r = s.rule
    lines = [f"# Rule check: {s.n_way}-way {s.k_shot}-shot, split `{s.split}`, "
             f"{s.tasks} tasks", "",
             f"Bundle rule: eta_exp {r['eta_exp']}, error_threshold {r['error_threshold']}, "
             f"factor_threshold {r['factor_threshold']}, eq6_threshold {r['eq6_threshold']}; "
             f"{s.synapses} plastic synapses.", "",
             f"Reference, float final-layer SGD ({sgd['steps']} step(s), lr {sgd['lr']:g} from the grid, "
             f"logit scale {sgd['logit_scale']:g}): **{_pct(sgd['accuracy'])}**, "
             f"{100 * sgd['fraction_synapses_updated']:.1f}% synapses updated, "
             f"mean |dw| {sgd['update_magnitude']['mean']:.3g} LSB ({sgd['note']}).", "",
             "## Weight precision x eta (bundle thresholds)", "",
             "| bits | grid step | eta_exp | accuracy | updated | mean \\|dw\\| | max \\|dw\\| |",
             "|---|---|---|---|---|---|---|"]
    for p in s.points("precision"):
        m = p["update_magnitude"]
        lines.append(f"| {p['bits']} | {p['grid_step']} | {p['eta_exp']} | {_pct(p['accuracy'])} | "
                     f"{100 * p['fraction_synapses_updated']:.1f}% | {m['mean']:.3g} | {m['max']:.0f} |")
    lines += ["", "## Thresholds (8 bits, bundle eta)", "",
              "| error_threshold | factor_threshold | accuracy | updated | mean \\|dw\\| | max \\|dw\\| |",
              "|---|---|---|---|---|---|"]
    seen = []
    for sw in ("no_threshold", "error_threshold", "factor_threshold", "bundle"):
        for p in s.points(sw):
            if any(p is q for q in seen):
                continue
            seen.append(p)
            m = p["update_magnitude"]
            lines.append(f"| {p['error_threshold']} | {p['factor_threshold']} | {_pct(p['accuracy'])} | "
                         f"{100 * p['fraction_synapses_updated']:.1f}% | {m['mean']:.3g} | {m['max']:.0f} |")
    lines += ["", "## SGD learning-rate grid", "", "| lr | accuracy | updated |", "|---|---|---|"]
    for p in sgd["per_lr"]:
        lines.append(f"| {p['lr']:g} | {_pct(p['accuracy'])} | {100 * p['fraction_synapses_updated']:.1f}% |")
    t = s.timing
    lines += ["", f"Precision model: {s.precision_model}", "",
              f"Timing: {t['sweep_points']} sweep points, {t['seconds_per_point_mean']:.2f} s per point "
              f"({1000 * t['seconds_per_episode']:.1f} ms per episode), frozen features "
              f"{t['seconds_frozen_features']:.2f} s, SGD grid {t['seconds_sgd']:.2f} s."]
    if s.outputs:
        pngs = [v for k, v in s.outputs.items() if k.startswith("png")]
        if pngs:
            lines += ["", "Plots: " + ", ".join(f"`{Path(p).name}`" for p in pngs)]
    return "\n".join(lines) + "\n"


def _save(fig, path: Path) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return str(path)


def write_plots(s: RuleCheckSummary, out: Path) -> dict:
    """accuracy-vs-bits.png, accuracy-vs-threshold.png, update-histogram.png (Agg, no pyplot)."""
    from matplotlib.figure import Figure

    sgd = s.sgd["accuracy"]
    files = {}
    # accuracy vs bits, one line per eta
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot(111)
    prec = s.points("precision")
    for e in s.sweep["eta_exps"]:
        pts = sorted((p for p in prec if p["eta_exp"] == e), key=lambda p: p["bits"])
        ax.errorbar([p["bits"] for p in pts], [100 * p["accuracy"]["mean"] for p in pts],
                    yerr=[100 * p["accuracy"]["std"] for p in pts], marker="o", capsize=3,
                    label=f"rule, eta 2^{e}")
    ax.axhspan(100 * (sgd["mean"] - sgd["std"]), 100 * (sgd["mean"] + sgd["std"]), color="0.85")
    ax.axhline(100 * sgd["mean"], color="k", ls="--", label=f"float SGD (lr {s.sgd['lr']:g})")
    ax.axhline(100 / s.n_way, color="r", ls=":", label="chance")
    ax.set_xlabel("plastic weight precision (bits)")
    ax.set_ylabel("one-shot query accuracy (%)")
    ax.set_title(f"{s.n_way}-way {s.k_shot}-shot, {s.tasks} tasks (mean ± std)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    files["png_accuracy_vs_bits"] = _save(fig, out / "accuracy-vs-bits.png")
    # accuracy vs thresholds
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot(111)
    for sw, name in (("error_threshold", "error_threshold"), ("factor_threshold", "factor_threshold")):
        pts = sorted(s.points(sw), key=lambda p: p[name])
        ax.errorbar([p[name] for p in pts], [100 * p["accuracy"]["mean"] for p in pts],
                    yerr=[100 * p["accuracy"]["std"] for p in pts], marker="o", capsize=3,
                    label=f"{name} (e_q / y2 units)")
    ax.axhline(100 * sgd["mean"], color="k", ls="--", label="float SGD")
    ax.set_xlabel("threshold")
    ax.set_ylabel("one-shot query accuracy (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    files["png_accuracy_vs_threshold"] = _save(fig, out / "accuracy-vs-threshold.png")
    # update-magnitude histograms (Fig. 5)
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot(111)
    edges = np.asarray(HIST_EDGES)
    curves = [("float SGD", s.sgd["update_magnitude"])]
    none = s.points("no_threshold")[0]
    curves.append(("rule, no threshold", none["update_magnitude"]))
    bund = s.points("bundle")[0]
    if bund is not none:
        curves.append((f"rule, bundle thresholds ({bund['error_threshold']}, {bund['factor_threshold']})",
                       bund["update_magnitude"]))
    errs = s.points("error_threshold")
    top = max(errs, key=lambda p: p["error_threshold"]) if errs else None
    if top is not None and top is not none and top is not bund:
        curves.append((f"rule, error threshold {top['error_threshold']}", top["update_magnitude"]))
    for label, m in curves:
        c = np.asarray(m["hist"]["counts"], float)
        ax.stairs(np.where(c > 0, c, np.nan), edges, label=f"{label} ({100 * (1 - m['zero_fraction']):.1f}% "
                  "updated)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("|w_end - w_start| (weight LSB)")
    ax.set_ylabel("synapses (all tasks)")
    ax.set_title("update magnitudes, 8 bits, bundle eta")
    ax.legend(fontsize=7)
    fig.tight_layout()
    files["png_update_histogram"] = _save(fig, out / "update-histogram.png")
    return files


def rule_check_cli(args) -> int:
    """`neuromaml rule-check`: run, print the Markdown, write --json if given."""
    from neuromaml.deploy.bundle import warn_if_uncalibrated

    warn_if_uncalibrated(args.bundle)
    s = rule_check(args.bundle, args.data, split=args.split, tasks=args.tasks, shots=args.shots,
                   queries=args.queries, bits=args.bits, eta_exps=args.eta_exp,
                   thresholds=args.thresholds, seed=args.seed, out=args.out, progress=True)
    if getattr(args, "json", None):
        write_json(args.json, s.to_dict())
    print(format_markdown(s))
    print(f"wrote {s.outputs['json']}")
    return 0
