"""How many training runs the current ``params.yaml`` asks for, and the device-hours.

    python -m pipeline.tools.estimate                  # measures a few steps of each run kind here
    python -m pipeline.tools.estimate --steps 5

Each kind of run (teacher, CE-like student, KD, DML, IL with each explainer it will use:
the configured one, and the ones its tuning trials draw) is timed for a few optimisation
steps on random data of the dataset's shape, on this machine's device and with the profile's fast path
(``runtime.amp``, ``channels_last``, ``compile``); an epoch is that step time
times the steps per epoch. Evaluation and start-up are not included, so read the total
as a lower bound.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from pipeline.core.cli import main as cli_main
from pipeline.core.config import Params, load_params
from pipeline.core.models import build_model
from pipeline.methods import build_method
from pipeline.methods.base import Method
from pipeline.orchestrate.schedule import Task, critical_path, makespan
from pipeline.results.design import Instance, instances
from pipeline.tools.parallel import positive
from pipeline.train.device import PLAIN
from pipeline.train.engine import (
    Accel,
    accel_for,
    configure_runtime,
    epoch_steps,
    prepare_models,
)
from pipeline.train.tune import apply, trial_config

TRAIN_SIZES = {"cifar10": (50_000, 10, (3, 32, 32)), "cifar100": (50_000, 100, (3, 32, 32)),
               "digits": (1_347, 10, (1, 8, 8))}


def dataset_shape(params: Params) -> tuple[int, int, tuple[int, int, int]]:
    """Training images (after the validation carve-out), classes, image shape."""
    data = params.data
    if data.name == "synthetic":
        s = data.synthetic
        n, c, shape = s.train_per_class * s.num_classes, s.num_classes, (1, s.image_size,
                                                                        s.image_size)
    elif data.name == "imagefolder":
        from pathlib import Path

        folder = Path(data.root) / "train"
        classes = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        n = sum(len(list(c.iterdir())) for c in classes) or 1000
        size = data.image_size or 32
        c, shape = max(len(classes), 2), (data.channels, size, size)
    else:
        n, c, shape = TRAIN_SIZES[data.name]
    n -= data.val_per_class * c
    if data.train_per_class:
        n = min(n, data.train_per_class * c)
    return n, c, shape


def step_seconds(params: Params, method: str, classes: int, shape, batch: int,
                 steps: int, device: torch.device, arch_role: str = "student",
                 accel: Accel = PLAIN) -> float:
    role = params.teacher if arch_role == "teacher" else params.student
    make = lambda: build_model(role.model.arch, classes, shape[0], role.model.width)  # noqa: E731
    teacher = build_model(params.teacher.model.arch, classes, shape[0],
                          params.teacher.model.width)
    m = build_method(method, params, make, teacher)
    prepare_models(m, device, accel)
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    return median_step_seconds(m, x, y, steps, warmup=2 if accel.compile else 1, accel=accel)


def training_step(method: Method, x: torch.Tensor, y: torch.Tensor,
                  accel: Accel = PLAIN) -> Callable[[], None]:
    """One full training step of ``method`` on ``(x, y)`` (forward, loss, backward, SGD
    update) as a callable, at the end of the schedule (past any warm-up: the full method);
    what the estimate and ``benchmarks/il_overhead.py`` time.

    ``method`` must already sit on ``x``'s device in ``accel``'s memory format.
    """
    x = x.contiguous(memory_format=accel.memory_format)
    late = 10**6
    head = getattr(method.student, "fc", None)  # every Classifier ends in one Linear
    classes = head.out_features if isinstance(head, torch.nn.Linear) else int(y.max()) + 1
    method.bind(len(y), classes, late + 1, x.device)  # per-sample state (PS-KD, online LS)
    method.index = torch.arange(len(y), device=x.device)
    optimizer = torch.optim.SGD([p for p in method.models.parameters() if p.requires_grad],
                                lr=0.01, momentum=0.9)
    method.train()

    def step() -> None:
        with accel.autocast(x.device):
            loss = method.step(x, y, epoch=late).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def median_step_seconds(method: Method, x: torch.Tensor, y: torch.Tensor, steps: int,
                        warmup: int = 2, accel: Accel = PLAIN) -> float:
    """Median wall time of :func:`training_step` over ``steps`` steps after ``warmup``."""
    step = training_step(method, x, y, accel)
    times = []
    for i in range(warmup + steps):
        tic = time.perf_counter()
        step()
        if x.is_cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - tic)
    return statistics.median(times)


def run_params(params: Params, i: Instance) -> Params:
    """The params an instance's runs train with, as far as the plan fixes them: a tuning
    trial's drawn configuration; every other instance at the profile's (a tuned recipe is
    not known before ``tune_select``)."""
    if i.stage == "tune" and i.runs:
        return apply(params, trial_config(params, i.method, int(i.name.rsplit("-", 1)[1])))
    return params


def explainer(params: Params, method: str) -> str:
    """What sets a run's cost within its method: IL's explainer (an input-space one pays a
    backward pass per class); '' for every other method."""
    return getattr(getattr(params, method, None), "explainer", "")


def plan(params: Params) -> list[tuple[str, str, str, int, int]]:
    """``(stage, method, explainer, runs, epochs)`` for every training stage of the DAG (the
    runs of :func:`~pipeline.results.design.instances`, summed per stage, method and
    explainer)."""
    rows: dict[tuple[str, str, str], int] = {}
    for i in instances(params):
        if i.runs:
            key = (i.stage, i.method, explainer(run_params(params, i), i.method))
            rows[key] = rows.get(key, 0) + i.runs
    return [(stage, method, how, runs, _epochs(params, stage))
            for (stage, method, how), runs in rows.items()]


def _epochs(params: Params, stage: str) -> int:
    return (params.teacher if stage == "teacher" else params.student).train.epochs


def dag_tasks(params: Params, epoch_seconds: Callable[[str, str, str], float]) -> list[Task]:
    """The DAG's stage instances as tasks (``epoch_seconds(role, method, explainer)``), with
    the edges that order them (a seed's KD instances wait for its own teacher)."""
    def seconds(i: Instance) -> float:  # tune_select (and skipped trials) train nothing
        if not i.runs:
            return 0.0
        role = "teacher" if i.stage == "teacher" else "student"
        how = explainer(run_params(params, i), i.method)
        return i.runs * _epochs(params, i.stage) * epoch_seconds(role, i.method, how)
    return [Task(i.name, seconds(i), i.after) for i in instances(params)]


def span(seconds: float) -> str:
    """``1.3 h`` or ``42 min``."""
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def entry(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--preset", default=None, help="a preset instead (presets/<name>.yaml "
                        "over quick.yaml), e.g. paper-cifar10")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("-j", "--jobs", type=positive, default=None,
                        help="workers on this machine (as `parallel -j`)")
    parser.add_argument("--gpus", type=positive, default=None, help="GPUs (as `parallel --gpus`)")
    parser.add_argument("--per-gpu", type=positive, default=1,
                        help="runs packed on each GPU (as `parallel --per-gpu`)")
    args = parser.parse_args(argv)
    workers = args.jobs or (args.gpus * args.per_gpu if args.gpus else 1)
    if args.preset:
        from pipeline.tools.presets import load_preset

        params = load_preset(args.preset)
    else:
        params = load_params(args.params)
    device = configure_runtime(params.runtime)
    accel = accel_for(params.runtime, device)
    n, classes, shape = dataset_shape(params)
    cache: dict[tuple[str, str, str], float] = {}
    total_runs, total_hours = 0, 0.0
    print(f"profile {params.profile}: {params.data.name}, {n} training images, {classes} classes, "
          f"device {device}, amp {accel.amp or 'off'}, channels_last {accel.channels_last}, "
          f"compile {accel.compile}")
    print("| stage | method | runs | epochs | s/epoch (measured) | device-hours |")
    print("|---|---|---|---|---|---|")
    for stage, method, how, runs, epochs in plan(params):
        role = "teacher" if stage == "teacher" else "student"
        batch = (params.teacher if role == "teacher" else params.student).train.batch_size
        key = (role, method, how)
        if key not in cache:
            timed = apply(params, {method: {"explainer": how}}) if how else params
            cache[key] = step_seconds(timed, method, classes, shape, batch, args.steps, device,
                                      role, accel) * epoch_steps(n, batch, accel.static_shapes)[0]
        hours = runs * epochs * cache[key] / 3600
        total_runs += runs
        total_hours += hours
        label = f"{method} ({how})" if how else method
        print(f"| {stage} | {label} | {runs} | {epochs} | {cache[key]:.2f} | {hours:.2f} |")
    print(f"| **total** | | **{total_runs}** | | | **{total_hours:.1f}** |")
    tasks = dag_tasks(params, lambda role, method, how: cache[(role, method, how)])
    wall, longest = makespan(tasks, workers), max(critical_path(tasks).values())
    print(f"\nwall time on {workers} worker(s) (an estimate): {span(wall)}; no schedule "
          f"finishes before max(critical path {span(longest)}, device-hours / workers "
          f"{span(total_hours * 3600 / workers)}). It assumes workers that do not slow each other "
          "(packed runs share a GPU: benchmarks/device_check.sh measures how much) and leaves "
          "out evaluation, start-up and DVC's bookkeeping.")


if __name__ == "__main__":
    cli_main(entry)
