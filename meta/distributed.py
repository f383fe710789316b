"""torch.distributed scale-out of meta-training and device choice: ranks split each meta-batch,
the meta-gradient is all-reduced (``distributed_meta_gradient``); ``resolve_device`` turns
``--device auto|cpu|cuda[:N]`` into a device or a clear error."""
from __future__ import annotations

import os
from datetime import timedelta

import torch

from neuromaml.io import NeuromamlError

from .maml import meta_gradient


def _world():
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def maybe_init_distributed(device: torch.device | None = None) -> None:
    """Join the process group when started by torchrun (WORLD_SIZE > 1): nccl when the
    run's ``device`` is a GPU (this rank's), gloo on the CPU."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        # Gloo picks its network interface from the machine's hostname. On a
        # sandboxed or containerised host that name may not resolve at all
        # (no /etc/hosts entry), and the ranks then hang instead of failing:
        # seen on CI, reproduced by removing the hostname from /etc/hosts. A
        # loopback MASTER_ADDR means every rank is on this machine, so bind
        # gloo to the loopback interface unless the user chose one.
        if os.environ.get("MASTER_ADDR", "") in ("127.0.0.1", "localhost", "::1"):
            os.environ.setdefault("GLOO_SOCKET_IFNAME", _loopback_interface())
        gpu = device is not None and torch.device(device).type == "cuda"
        if gpu:
            torch.cuda.set_device(torch.device(device))
        dist.init_process_group("nccl" if gpu else "gloo",
                                timeout=timedelta(seconds=int(os.environ.get("NEUROMAML_DIST_TIMEOUT", "300"))))


def finish_distributed() -> None:
    """Leave the process group cleanly (torchrun runs). A barrier first: torch 2.3's gloo
    destroys a finished all-reduce's work object in its own thread, which needs the GIL to
    release the gradient tensors; ``destroy_process_group`` joins those threads while holding
    the GIL, and if one is still releasing, the rank hangs at exit (seen on CI: a
    two-process run whose result was written never exited). Waiting in the barrier releases
    the GIL until both ranks' earlier work is done and gone."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _loopback_interface() -> str:
    """Name of the loopback network interface ('lo' on Linux, 'lo0' on macOS)."""
    import socket

    names = [name for _, name in socket.if_nameindex()] if hasattr(socket, "if_nameindex") else []
    for name in ("lo", "lo0"):
        if name in names:
            return name
    return "lo"


def resolve_device(spec: str | None = "auto") -> torch.device:
    """``--device``: auto (a GPU when torch sees one, else the CPU), cpu, cuda or cuda:N.
    Under torchrun, auto and cuda mean this rank's GPU (LOCAL_RANK)."""
    spec = (spec or "auto").strip().lower()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if not spec.startswith("cuda"):
        raise NeuromamlError(f"--device {spec!r}: unknown device (fix: use auto, cpu, cuda or cuda:N)")
    if not torch.cuda.is_available():
        raise NeuromamlError(f"--device {spec}: torch sees no CUDA GPU (fix: use --device cpu, or install "
                             f"a CUDA build of torch {torch.__version__.split('+')[0]})")
    try:
        dev = torch.device(spec if ":" in spec else f"cuda:{local}")
    except RuntimeError:
        raise NeuromamlError(f"--device {spec!r}: not a device name (fix: cuda or cuda:N)") from None
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise NeuromamlError(f"--device {spec}: only {torch.cuda.device_count()} GPU(s) "
                             f"(fix: cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    return dev


def distributed_meta_gradient(model, params: dict, tasks, inner, lrs=None):
    """Meta-gradient of the mean query loss over ``tasks``, the tasks split across
    ranks (task j on rank j % world) and the gradients all-reduced (summed).
    Returns (mean loss, mean acc) over all tasks."""
    import torch.distributed as dist

    rank, world = _world()
    mine = [t for j, t in enumerate(tasks) if j % world == rank]
    loss = acc = 0.0
    if mine:
        loss, acc = meta_gradient(model, params, mine, inner, lrs, weight=1.0 / len(tasks))
        loss, acc = loss * len(mine), acc * len(mine)
    if world > 1:
        tensors = [p for p in list(params.values()) + (list(lrs.parameters()) if lrs is not None else [])
                   if p.requires_grad]
        for p in tensors:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
        stats = torch.tensor([loss, acc], dtype=torch.float64, device=tensors[0].device)
        dist.all_reduce(stats)
        loss, acc = stats.tolist()
    return loss / len(tasks), acc / len(tasks)
