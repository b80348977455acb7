"""The training engine: learning, determinism, resume, schedules, divergence."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.core.errors import CheckpointError, TrainingDiverged
from pipeline.core.models import build_model
from pipeline.methods.ce import CE
from pipeline.methods.dml import DML
from pipeline.train import engine

from ..helpers import REPO, device_data, train_cfg


def _ce(seed: int = 0) -> CE:
    torch.manual_seed(seed)
    return CE(build_model("small_cnn", 4, 1, 0.25))


def _strip(history):
    return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in history]


def test_loss_decreases_and_learns():
    data = device_data()
    history = engine.fit(_ce(), data, train_cfg(epochs=6), seed=0, progress=False)
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    assert history[-1]["test_acc"] > 60.0  # 4 classes: chance is 25%
    assert [r["epoch"] for r in history] == list(range(1, 7))


def test_same_seed_same_metrics_other_seed_differs():
    data = device_data()
    runs = []
    for seed in (0, 0, 1):
        engine.seed_everything(seed)
        runs.append(_strip(engine.fit(_ce(seed), data, train_cfg(), seed=seed, progress=False)))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


class Killed(Exception):
    pass


def _full_and_resumed(make, tmp_path):
    """An uninterrupted 4-epoch run, and one killed after epoch 2 then resumed in a "fresh
    process" (other global RNG state, other initial weights): both histories, and the
    checkpoint the resume started from."""
    data, cfg = device_data(), train_cfg(epochs=4)
    engine.seed_everything(0)
    full = engine.fit(make(0), data, cfg, seed=0, progress=False)
    ckpt = engine.Checkpoint(tmp_path / "last.pt", "abc")

    def die_after_two(row):
        if row["epoch"] == 2:
            raise Killed

    engine.seed_everything(0)
    with pytest.raises(Killed):
        engine.fit(make(0), data, cfg, seed=0, checkpoint=ckpt, on_epoch=die_after_two,
                   extra={"run_id": "r1"}, progress=False)
    state = ckpt.load()
    engine.seed_everything(123)
    resumed = engine.fit(make(99), data, cfg, seed=0, checkpoint=ckpt, resume=state,
                         progress=False)
    return _strip(full), _strip(resumed), state


def test_resume_after_interruption_is_bit_identical(tmp_path):
    full, resumed, state = _full_and_resumed(_ce, tmp_path)
    assert state["epoch"] == 2 and state["extra"] == {"run_id": "r1"}
    assert resumed == full


@pytest.mark.parametrize("name", ["ps_kd", "online_label_smoothing"])
def test_methods_with_state_resume_bit_identical(tmp_path, name):
    """PS-KD's per-sample predictions and online LS's class matrix travel in the checkpoint:
    without them a resumed run would restart from zeros / the identity and differ."""
    from pipeline.methods.online_label_smoothing import OnlineLabelSmoothing
    from pipeline.methods.ps_kd import PSKD

    def make(seed):
        torch.manual_seed(seed)
        student = build_model("small_cnn", 4, 1, 0.25)
        return PSKD(student, 0.8) if name == "ps_kd" else OnlineLabelSmoothing(student, 0.5)

    full, resumed, state = _full_and_resumed(make, tmp_path)
    assert state["method"]  # the method's own state is in the checkpoint
    assert resumed == full


def test_eval_every_scores_some_epochs_and_the_last():
    history = engine.fit(_ce(), device_data(), train_cfg(epochs=5, eval_every=2), seed=0,
                         progress=False)
    assert ["test_acc" in row for row in history] == [False, True, False, True, True]
    assert all("train_loss" in row for row in history)


def test_checkpoint_for_other_params_is_ignored_and_truncated_one_fails(tmp_path):
    ckpt = engine.Checkpoint(tmp_path / "last.pt", "abc")
    ckpt.save({"epoch": 1})
    assert engine.Checkpoint(tmp_path / "last.pt", "other").load() is None
    (tmp_path / "last.pt").write_bytes((tmp_path / "last.pt").read_bytes()[:50])
    with pytest.raises(CheckpointError, match=r"last\.pt: checkpoint is unreadable"):
        ckpt.load()


def test_lr_schedules():
    cfg = train_cfg(epochs=10, lr=0.1, schedule={"name": "multistep", "milestones": [0.5, 0.8],
                                                 "gamma": 0.1})
    assert [round(engine.lr_at(cfg, e), 6) for e in (0, 4, 5, 7, 8, 9)] == \
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    cos = train_cfg(epochs=4, lr=0.2, schedule={"name": "cosine"})
    assert engine.lr_at(cos, 2) == pytest.approx(0.1)
    assert engine.lr_at(cos, 1) == pytest.approx(0.1 * (1 + math.cos(math.pi / 4)))
    assert engine.lr_at(train_cfg(schedule={"name": "constant"}), 2) == 0.05


def test_exploding_lr_stops_at_the_end_of_its_epoch_naming_the_first_bad_step():
    """The finite-loss test lives on the device and is read once per epoch (no host sync
    per step); the epoch's weights are never saved."""
    with pytest.raises(TrainingDiverged, match=r"non-finite loss at epoch 1, step \d+;"):
        engine.fit(_ce(), device_data(), train_cfg(lr=1e12, schedule={"name": "constant"}),
                   seed=0, progress=False)


def test_dml_reports_each_peer_and_their_mean():
    torch.manual_seed(0)
    method = DML(build_model("small_cnn", 4, 1, 0.25), build_model("small_cnn", 4, 1, 0.25), 0.5)
    row = engine.fit(method, device_data(), train_cfg(epochs=1), seed=0, progress=False)[-1]
    assert row["test_acc"] == pytest.approx((row["peer0_test_acc"] + row["peer1_test_acc"]) / 2)
    assert {"train_peer0_ce", "train_peer1_kl"} <= set(row)


class DivergesAtEpoch(CE):
    """CE whose loss turns NaN from a given epoch on (a stand-in for an exploding run)."""

    def __init__(self, model, epoch: int) -> None:
        super().__init__(model)
        self.bad_epoch = epoch

    def step(self, x, y, epoch):
        out = super().step(x, y, epoch)
        if epoch >= self.bad_epoch:
            out.terms["ce"] = out.terms["ce"] * float("nan")
        return out


def test_divergence_keeps_the_last_good_checkpoint(tmp_path):
    ckpt = engine.Checkpoint(tmp_path / "last.pt", "abc")
    engine.seed_everything(0)
    with pytest.raises(TrainingDiverged, match="non-finite loss at epoch 3, step 1"):
        engine.fit(DivergesAtEpoch(_ce().student, epoch=2), device_data(),
                   train_cfg(epochs=4), seed=0, checkpoint=ckpt, progress=False)
    state = ckpt.load()
    assert state["epoch"] == 2 and state["partial"] is None
    assert [row["epoch"] for row in state["history"]] == [1, 2]
    assert all(torch.isfinite(v).all() for v in state["models"].values() if v.is_floating_point())


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize(("momentum", "nesterov", "decay"),
                         [(0.0, False, 0.0), (0.9, False, 5e-4), (0.9, True, 1e-3)])
def test_sgd_is_torch_sgd_bit_for_bit(momentum, nesterov, decay, foreach):
    """The engine's SGD (no torch.optim, so no torch._dynamo import at start-up) against
    torch.optim.SGD on the same model, data and steps: equal weights, bit for bit, and a
    state_dict each can load from the other."""
    from pipeline.train.sgd import SGD

    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))

    ours_model, ref_model = model(), model()
    ours = SGD(ours_model.parameters(), lr=0.1, momentum=momentum, nesterov=nesterov,
               weight_decay=decay)
    ours.foreach = foreach
    ref = torch.optim.SGD(ref_model.parameters(), lr=0.1, momentum=momentum,
                          nesterov=nesterov, weight_decay=decay, foreach=foreach)
    gen = torch.Generator().manual_seed(1)
    for step in range(5):
        x, y = torch.randn(16, 5, generator=gen), torch.randint(0, 3, (16,), generator=gen)
        for net, opt in ((ours_model, ours), (ref_model, ref)):
            for group in opt.param_groups:
                group["lr"] = 0.1 / (step + 1)
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    for a, b in zip(ours_model.parameters(), ref_model.parameters(), strict=True):
        assert torch.equal(a, b)
    ours_state, ref_state = ours.state_dict(), ref.state_dict()
    assert set(ours_state["state"]) == set(ref_state["state"])
    for i, state in ref_state["state"].items():
        if state.get("momentum_buffer") is not None:
            assert torch.equal(ours_state["state"][i]["momentum_buffer"], state["momentum_buffer"])
    ref.load_state_dict(ours_state)  # checkpoints stay loadable by either
    fresh = SGD(ours_model.parameters(), lr=1.0)
    fresh.load_state_dict(ref_state)
    assert fresh.param_groups[0]["momentum"] == momentum


def test_fit_does_not_import_dynamo():
    """The point of the engine's own SGD: a stage process never pays for torch._dynamo."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "from pipeline.train import engine\n"
            "from tests.helpers import device_data, train_cfg\n"
            "from pipeline.methods import build_method\n"
            "from pipeline.core.config import parse_params\n"
            "import yaml\n"
            "raw = yaml.safe_load(open('params.yaml'))\n"
            "m = build_method('ce', parse_params(raw), lambda: __import__('pipeline.core.models',"
            " fromlist=['x']).build_model('small_cnn', 4, 1, 0.25))\n"
            "engine.fit(m, device_data(num_classes=4, per_class=8), train_cfg(epochs=1),"
            " seed=0, progress=False)\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_cuda_runs_use_torchs_foreach_sgd_and_checkpoints_cross_over():
    """On CUDA the optimizer is torch.optim.SGD with its multi-tensor update; on the CPU the
    engine's own (no torch._dynamo import). Built here for a CUDA device on CPU tensors
    (foreach runs on the CPU too): both take the same steps and load each other's state."""
    import torch.optim

    from pipeline.train.sgd import SGD

    cfg = train_cfg(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    runs = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        model = build_model("small_cnn", 4, 1, 0.25)
        opt = engine.make_sgd(list(model.parameters()), cfg, torch.device(device))
        x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 4, (8,))
        for _ in range(3):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        runs[device] = (opt, model)
    cpu_opt, cuda_opt = runs["cpu"][0], runs["cuda"][0]
    assert isinstance(cpu_opt, SGD) and isinstance(cuda_opt, torch.optim.SGD)
    assert cuda_opt.param_groups[0]["foreach"] is True
    for a, b in zip(runs["cpu"][1].parameters(), runs["cuda"][1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)  # same math, other kernels
    cpu_opt.load_state_dict(cuda_opt.state_dict())
    cuda_opt.load_state_dict(cpu_opt.state_dict())


class _Recording(CE):
    """CE that records each step's batch size and mean loss (a hand reference)."""

    def __init__(self, student):
        super().__init__(student)
        self.steps: list[tuple[int, float]] = []

    def step(self, x, y, epoch):
        out = super().step(x, y, epoch)
        self.steps.append((len(y), float(out.loss)))
        return out


@pytest.mark.parametrize("static", [False, True])
def test_static_shapes_drop_the_partial_batch_and_average_what_trained(static):
    """70 samples, batch 16: four full batches and one of 6, or (static shapes, prepared
    for CUDA graphs) the four full ones only; the epoch's train_loss is the sample mean
    over the steps that ran, its train_acc over the samples they saw."""
    data = device_data(num_classes=2, per_class=35)
    assert data.size("train") == 70
    torch.manual_seed(0)
    method = _Recording(build_model("small_cnn", 2, 1, 0.25))
    row, = engine.fit(method, data, train_cfg(epochs=1, batch_size=16), seed=0, progress=False,
                      accel=engine.Accel(static_shapes=static))
    sizes = [n for n, _ in method.steps]
    assert sizes == ([16] * 4 if static else [16] * 4 + [6])
    seen = sum(sizes)
    mean = sum(n * loss for n, loss in method.steps) / seen
    assert row["train_loss"] == pytest.approx(mean, rel=1e-6)
    assert 0 <= row["train_acc"] <= 100 and (row["train_acc"] * seen / 100) == pytest.approx(
        round(row["train_acc"] * seen / 100), abs=1e-6)  # a whole number of correct samples
