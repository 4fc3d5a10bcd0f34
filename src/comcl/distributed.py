"""Training on several GPUs: one process per GPU, spawned by the training functions themselves.

A job given N GPUs (``CUDA_VISIBLE_DEVICES``) trains on all of them without a launcher in front
of it: :func:`launch` spawns one process per GPU as torchrun would (``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` on 127.0.0.1 and a free port), with NCCL
between GPUs and gloo between CPU processes, which is how the tests run two processes without a
GPU. So the workflow's script adapters stay thin, and a run on one device spawns nothing.

Every other function here answers as one process would when no process group is up (rank 0 of 1;
gathering returns the tensor itself), so training code calls them the same way in both cases.

A process sees only its shard of a batch, and batch norm would then normalise with shard
statistics: the results would depend on the number of GPUs. :func:`synchronise_batch_norm` makes
every process normalise with the statistics of the whole batch. torch's ``SyncBatchNorm`` does
that on GPUs but refuses CPU tensors, so gloo processes use :class:`ReducedBatchNorm2d`.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import os
import pickle
import socket
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from logging.handlers import QueueHandler, QueueListener
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as differentiable
import torch.multiprocessing as mp
from torch import Tensor, nn
from torch.multiprocessing.spawn import ProcessException
from torch.nn.parallel import DistributedDataParallel

from comcl.devices import device_for, processes_for
from comcl.errors import DataError

T = TypeVar("T")
_RESULT = "result.pickle"


def world_size() -> int:
    """The number of training processes: 1 when no process group is up."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank: 0 when no process group is up."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this process writes the outputs, checkpoints and logs: only one of them may."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process: the others must not read a checkpoint before the main process has written it."""
    if world_size() > 1:
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Run the block on the main process first, then on the others: what it caches (downloaded weights)
    is then fetched once, not once per process."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def shard(count: int) -> slice:
    """This process's rows of ``count``: contiguous, in rank order, sizes differing by at most one, so the
    processes' rows concatenated are the rows as one process has them."""
    base, extra = divmod(count, world_size())
    start = rank() * base + min(rank(), extra)
    return slice(start, start + base + (rank() < extra))


def per_process(budget: int) -> int:
    """This process's part of a job's budget of threads or loader workers, at least one if the budget is positive:
    the job's processes share the cores it was given."""
    return budget and max(1, budget // world_size())


def _device() -> torch.device:
    """Where collectives run: NCCL needs the process's GPU, gloo takes CPU tensors."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_gather(tensor: Tensor) -> Tensor:
    """Every process's rows of ``tensor``, concatenated in rank order, on every process alike.

    Processes may hold different numbers of rows (the shards of an evaluation set), and one with no
    rows may give any trailing shape. Nothing flows back to ``tensor`` in backward: what is gathered
    is a result (keys for the queues, losses to select anchors from, predictions).
    """
    world = world_size()
    if world == 1:
        return tensor
    local = tensor.detach().to(_device())
    shapes = torch.zeros(world, local.dim(), dtype=torch.long, device=local.device)
    shapes[rank()] = torch.tensor(local.shape)
    dist.all_reduce(shapes)
    sizes: list[list[int]] = shapes.tolist()
    padded = local.new_zeros(max(sizes, key=lambda shape: shape[0]))
    if len(local):
        padded[: len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([part[: shape[0]] for part, shape in zip(parts, sizes, strict=True)]).to(tensor.device)


def broadcast(tensor: Tensor, source: int = 0) -> Tensor:
    """``source``'s ``tensor`` on every process: bitwise one value where each process computed its own copy."""
    if world_size() == 1:
        return tensor
    buffer = tensor.detach().to(_device()).contiguous()
    dist.broadcast(buffer, source)
    return buffer.to(tensor.device)


def average(value: float) -> float:
    """The mean of ``value`` over the processes (a logged loss of each one's shard)."""
    if world_size() == 1:
        return value
    total = torch.tensor(value, dtype=torch.float64, device=_device())
    dist.all_reduce(total)
    return float(total) / world_size()


def average_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Replace each gradient by its mean over the processes, in one all-reduce.

    For a model that no ``DistributedDataParallel`` wraps: the contrastive model's forward is two
    encoders, and only the query encoder has gradients. Parameters without a gradient are left out;
    every process runs the same graph, so the same ones on each.
    """
    world = world_size()
    grads = [parameter.grad for parameter in parameters if parameter.grad is not None]
    if world == 1 or not grads:
        return
    flat = torch.cat([grad.reshape(-1) for grad in grads])
    dist.all_reduce(flat)
    flat.div_(world)
    for grad, mean in zip(grads, flat.split([grad.numel() for grad in grads]), strict=True):
        grad.copy_(mean.view_as(grad))


class ReducedBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` that trains with the statistics of the whole batch over the processes, on gloo.

    Each process puts its per-channel (count, mean, variance) in its own row of a table of zeros,
    and one summing all-reduce fills the table on every process; the pooled variance is Chan's
    combination of the rows, as exact as one pass over the whole batch. The all-reduce is
    differentiable, and its backward sums the gradients that every process's loss sends to the
    statistics, as ``SyncBatchNorm``'s does: averaging the parameter gradients over the processes
    then gives the gradient of the whole batch. Every process needs at least one item.
    """

    def forward(self, input: Tensor) -> Tensor:
        if not self.training or world_size() == 1:
            return super().forward(input)
        self._check_input_dim(input)
        values = input.float()
        variance, mean = torch.var_mean(values, dim=[0, *range(2, values.dim())], correction=0)
        count = torch.full_like(mean, values.numel() / values.shape[1])
        rows = [mean.new_zeros(3, len(mean)) for _ in range(world_size())]
        rows[rank()] = torch.stack([count, mean, variance])
        counts, means, variances = differentiable.all_reduce(torch.stack(rows)).unbind(1)
        total = counts.sum(0)
        weights = counts / total
        mean = (weights * means).sum(0)
        variance = (weights * (variances + (means - mean) ** 2)).sum(0)
        if self.track_running_stats:
            self._track(mean.detach(), variance.detach(), float(total[0].detach()))
        shape = (1, -1) + (1,) * (values.dim() - 2)
        output = (values - mean.view(shape)) * torch.rsqrt(variance + self.eps).view(shape)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        return output.to(input.dtype)

    @torch.no_grad()
    def _track(self, mean: Tensor, variance: Tensor, count: float) -> None:
        """Update the running statistics as ``BatchNorm2d`` does: the running variance is the unbiased one."""
        # Called only with track_running_stats, which keeps these.
        assert self.num_batches_tracked is not None and self.running_mean is not None and self.running_var is not None
        self.num_batches_tracked.add_(1)
        factor = 1 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
        self.running_var.mul_(1 - factor).add_(variance * count / (count - 1), alpha=factor)


def _reduced(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, ReducedBatchNorm2d):
        reduced = ReducedBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        # The same parameter and buffer objects: an optimiser built on them, or requires_grad off
        # (the momentum encoder's), carries over.
        reduced.weight, reduced.bias = module.weight, module.bias
        reduced.running_mean, reduced.running_var = module.running_mean, module.running_var
        reduced.num_batches_tracked = module.num_batches_tracked
        return reduced.train(module.training)
    for name, child in module.named_children():
        module.add_module(name, _reduced(child))
    return module


def synchronise_batch_norm(module: nn.Module) -> nn.Module:
    """``module`` with every batch norm normalising over the whole batch of all processes while training.

    torch's ``SyncBatchNorm`` on NCCL (fused GPU kernels), :class:`ReducedBatchNorm2d` on gloo. Both
    keep ``BatchNorm2d``'s state dict keys, so checkpoints and encoders load either way. One process: ``module``.
    """
    if world_size() == 1:
        return module
    if dist.get_backend() == "nccl":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _reduced(module)


def data_parallel(module: nn.Module) -> nn.Module:
    """``module`` for training over the processes: batch norm synchronised, gradients averaged by DDP.

    Buffers are not broadcast: with synchronised batch norm every process's running statistics are
    already those of the whole batch. One process: ``module`` itself.
    """
    if world_size() == 1:
        return module
    module = synchronise_batch_norm(module)
    cuda = next(module.parameters()).device.type == "cuda"
    return DistributedDataParallel(module, device_ids=[torch.cuda.current_device()] if cuda else None, broadcast_buffers=False)


def backend(device: torch.device) -> str:
    """NCCL between GPUs; gloo between CPU processes, where NCCL cannot run."""
    return "nccl" if device.type == "cuda" else "gloo"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _save(path: Path, value: Any) -> None:
    """Pickle ``value`` for the launching process; an exception that cannot be pickled is reported by spawn's own message."""
    try:
        path.write_bytes(pickle.dumps(value))
    except (pickle.PicklingError, TypeError, AttributeError):
        pass


def _run_process(
    process: int,
    world: int,
    kind: str,
    port: int,
    records: Any,
    level: int,
    folder: str,
    function: Callable[..., Any],
    args: Sequence[Any],
) -> None:
    """One spawned process: joins the group as rank ``process`` (on GPU ``process`` with NCCL), runs ``function``,
    and leaves what the launching process reads in ``folder``: the main process's result, or its own exception."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(process), LOCAL_RANK=str(process), WORLD_SIZE=str(world)
    )
    root = logging.getLogger()
    root.addHandler(QueueHandler(records))
    # The launching process's handlers write what the main process logs; the others would repeat it.
    root.setLevel(level if process == 0 else logging.ERROR)
    device = None
    if kind == "nccl":
        torch.cuda.set_device(process)
        device = torch.device("cuda", process)
    dist.init_process_group(kind, device_id=device)
    try:
        result = function(*args)
    except Exception as error:
        _save(Path(folder) / f"error{process}.pickle", error)
        raise
    if process == 0:
        _save(Path(folder) / _RESULT, result)
    dist.destroy_process_group()


def training_stage(section: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """A training stage's entry, written as one process runs it (its ``params`` the config ``section``), called as
    :func:`launch_training` runs it: one process per GPU the job sees, or ``world_size`` processes (a keyword the
    decorated function gains), each taking an equal share of every batch of ``params["batch_size"]``."""

    def decorate(function: Callable[..., T]) -> Callable[..., T]:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def launched(*args: Any, world_size: int | None = None, **kwargs: Any) -> T:
            bound = signature.bind(*args, **kwargs)
            in_process = _Undecorated(function.__module__, function.__qualname__)
            return launch_training(in_process, bound.args, bound.arguments["params"], section, world_size)

        return launched

    return decorate


class _Undecorated:
    """A decorated stage's own function, by name: a spawned process finds it by importing its module, where the
    name is bound to the launching wrapper (which pickle would refuse as another object)."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:
        return getattr(importlib.import_module(self.module), self.name).__wrapped__(*args)


def launch_training(
    function: Callable[..., T], args: Sequence[Any], params: Mapping[str, Any], section: str, world_size: int | None
) -> T:
    """:func:`launch` for a training stage's ``params`` (its config ``section``): one process per GPU the job sees,
    or ``world_size`` processes, each taking an equal share of every batch of ``params["batch_size"]``."""
    processes = world_size or processes_for(params["device"])
    if params["batch_size"] % processes:
        raise DataError(
            f"{section}.batch_size {params['batch_size']} does not split evenly over {processes} processes (one per GPU)",
            hint=f"set {section}.batch_size to a multiple of the number of GPUs, or give the job fewer GPUs",
        )
    return launch(function, args, processes, device_for(params["device"]))


def launch(function: Callable[..., T], args: Sequence[Any], processes: int, device: torch.device) -> T:
    """``function(*args)`` on ``processes`` processes, one per GPU of ``device``'s kind; what the main process returns.

    One process: called here, nothing spawned. More: spawned (``function`` and ``args`` must be
    picklable), their log records handed to this process's handlers, and an exception raised in one
    of them raised here again as itself (a ``DataError`` stays one), chained to spawn's report with
    the process's traceback.
    """
    if processes == 1:
        return function(*args)
    context = mp.get_context("spawn")
    records = context.Queue()
    root = logging.getLogger()
    listener = QueueListener(records, *root.handlers, respect_handler_level=True)
    with tempfile.TemporaryDirectory(prefix="comcl-processes-") as folder:
        listener.start()
        try:
            mp.spawn(
                _run_process,
                args=(processes, backend(device), _free_port(), records, root.getEffectiveLevel(), folder, function, tuple(args)),
                nprocs=processes,
            )
        except ProcessException as failure:
            error = Path(folder) / f"error{failure.error_index}.pickle"
            if not error.is_file():
                raise
            raise pickle.loads(error.read_bytes()) from failure
        finally:
            listener.stop()
        return pickle.loads((Path(folder) / _RESULT).read_bytes())
