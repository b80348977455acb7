"""The fast path (runtime.amp / channels_last / compile), checked on the CPU.

Precision and memory format must change how the math runs, not what it
computes: each check compares against the plain fp32 path or looks at what the
autocast context actually produced.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from pipeline.core.models import build_model
from pipeline.core.sections import RuntimeConfig
from pipeline.methods.ce import CE
from pipeline.methods.kd import KD
from pipeline.train import engine

from ..helpers import device_data, train_cfg

CPU = torch.device("cpu")


def _model(seed: int = 0, arch: str = "small_cnn") -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(arch, 4, 1, 0.25 if arch == "small_cnn" else 1.0)


@pytest.mark.parametrize(("amp", "expected"), [("off", None), ("bf16", torch.bfloat16),
                                               ("fp16", torch.float16), ("auto", None)])
def test_amp_setting_resolves_to_a_dtype_on_cpu(amp, expected):
    # auto means bf16 only on a CUDA device that supports it: plain fp32 on a CPU
    assert engine.accel_for(RuntimeConfig(amp=amp), CPU).amp is expected


def test_bf16_autocast_covers_student_and_teacher_steps_and_keeps_training():
    seen: dict[str, set] = {"student": set(), "teacher": set()}
    student, teacher = _model(0), _model(1)
    student.register_forward_hook(lambda m, i, o: seen["student"].add((o.dtype, m.training)))
    teacher.register_forward_hook(
        lambda m, i, o: seen["teacher"].add((o.dtype, o.requires_grad)))
    method = KD(student, teacher, alpha=0.9, T=4.0)
    history = engine.fit(method, device_data(), train_cfg(epochs=2), seed=0, progress=False,
                         accel=engine.Accel(amp=torch.bfloat16))
    # training forwards ran in bf16, evaluation forwards in fp32 (the reported metrics are
    # the model's, not bf16's); the teacher never needs grad
    assert (torch.bfloat16, True) in seen["student"]
    assert (torch.float32, False) in seen["student"]
    assert (torch.bfloat16, False) not in seen["student"]
    assert seen["teacher"] == {(torch.bfloat16, False)}
    # the weights the optimizer updates stay fp32
    assert all(p.dtype == torch.float32 for p in method.models.parameters())
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_bf16_losses_track_fp32_on_one_step():
    """Same weights, same batch: bf16 loss within bf16 rounding of the fp32 loss."""
    data = device_data()
    x, y = data.batch("train", slice(0, 64))
    model = _model().train()
    fp32 = F.cross_entropy(model(x), y)
    with engine.Accel(amp=torch.bfloat16).autocast(CPU):
        bf16 = F.cross_entropy(model(x), y)
    assert bf16.dtype == torch.float32  # autocast runs the loss itself in fp32
    assert bf16.item() == pytest.approx(fp32.item(), rel=2e-2)
    assert bf16.item() != fp32.item()  # the matmuls really ran in bf16


def test_fp16_uses_loss_scaling_and_resumes_bit_for_bit(tmp_path):
    data, cfg = device_data(), train_cfg(epochs=3)
    accel = engine.Accel(amp=torch.float16)
    full = engine.fit(CE(_model()), data, cfg, seed=0, progress=False, accel=accel)

    ckpt = engine.Checkpoint(tmp_path / "last.pt", "fp")

    def stop_after_two(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        engine.fit(CE(_model()), data, cfg, seed=0, checkpoint=ckpt, on_epoch=stop_after_two,
                   progress=False, accel=accel)
    state = ckpt.load()
    scale = state["scaler"]["scale"]
    assert scale > 1.0  # GradScaler's state travels with the checkpoint (default start 2**16)
    resumed = engine.fit(CE(_model(seed=5)), data, cfg, seed=0, checkpoint=ckpt, resume=state,
                         progress=False, accel=accel)
    def strip(history):
        return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in history]

    assert strip(resumed) == strip(full)


def test_fp32_checkpoints_carry_no_scaler(tmp_path):
    ckpt = engine.Checkpoint(tmp_path / "last.pt", "fp")
    engine.fit(CE(_model()), device_data(), train_cfg(epochs=1), seed=0, checkpoint=ckpt,
               progress=False)
    assert ckpt.load()["scaler"] is None


def test_channels_last_changes_layout_not_gradients():
    data = device_data()
    x, y = data.batch("train", slice(0, 32))
    plain = CE(_model(arch="resnet8"))
    fast = copy.deepcopy(plain)
    engine.prepare_models(fast, CPU, engine.Accel(channels_last=True))
    conv = next(m for m in fast.student.modules()
                if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
    grads = []
    for method, fmt in ((plain, torch.contiguous_format), (fast, torch.channels_last)):
        method.train()
        method.step(x.contiguous(memory_format=fmt), y, 0).loss.backward()
        grads.append([p.grad.clone() for p in method.models.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b.contiguous(), rtol=1e-4, atol=1e-5)


def test_channels_last_fit_matches_plain_fit():
    data, cfg = device_data(), train_cfg(epochs=2)
    plain = engine.fit(CE(_model()), data, cfg, seed=0, progress=False)
    fast = engine.fit(CE(_model()), data, cfg, seed=0, progress=False,
                      accel=engine.Accel(channels_last=True))
    for a, b in zip(plain, fast, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
        assert abs(b["test_acc"] - a["test_acc"]) <= 2.5  # at most one of 40 test images


def test_compile_in_place_keeps_state_dict_keys_and_results():
    """torch.compile (inductor, needs a C compiler) gives the eager results."""
    pytest.importorskip("torch._inductor")
    data, cfg = device_data(), train_cfg(epochs=1)
    eager = CE(_model())
    compiled = CE(_model())
    keys = list(eager.models.state_dict())
    h_eager = engine.fit(eager, data, cfg, seed=0, progress=False)
    h_comp = engine.fit(compiled, data, cfg, seed=0, progress=False,
                        accel=engine.Accel(compile=True))
    assert compiled.student.trunk._compiled_call_impl is not None
    assert list(compiled.models.state_dict()) == keys  # no "_orig_mod." prefixes
    assert h_comp[0]["train_loss"] == pytest.approx(h_eager[0]["train_loss"], rel=1e-3)
    for a, b in zip(eager.models.parameters(), compiled.models.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_compile_covers_introspective_feature_map_path():
    """IL's Grad-CAM step calls forward_features: the compiled trunk must serve it too."""
    pytest.importorskip("torch._inductor")
    from pipeline.methods.introspective import Introspective
    from pipeline.methods.registry.introspective import IntrospectiveConfig

    data, cfg = device_data(), train_cfg(epochs=1)
    runs = []
    for compile_ in (False, True):
        method = Introspective(_model(), IntrospectiveConfig(explainer="gradcam"))
        calls = []
        method.student.trunk.register_forward_hook(lambda m, i, o, c=calls: c.append(1))
        history = engine.fit(method, data, cfg, seed=0, progress=False,
                             accel=engine.Accel(compile=compile_))
        runs.append((method, history, len(calls)))
    (eager, h_eager, n_eager), (compiled, h_comp, n_comp) = runs
    assert compiled.student.trunk._compiled_call_impl is not None
    assert n_comp == n_eager > 0  # every forward (train and eval) went through the trunk
    assert h_comp[0]["train_loss"] == pytest.approx(h_eager[0]["train_loss"], rel=1e-3)
    for a, b in zip(eager.models.parameters(), compiled.models.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_il_explanations_and_targets_are_fp32_under_bf16_autocast(monkeypatch):
    """Under amp the explanation maps, similarities and soft targets are computed in fp32
    (autocast off for those parts; similarities are divided by tau = 0.1, which would
    magnify bf16's rounding tenfold). What remains is the bf16 forward pass that training
    itself uses: the targets then stay within 0.02 (probability) of an fp32 step."""
    import pipeline.methods.introspective as il
    from pipeline.methods.registry.introspective import IntrospectiveConfig

    seen = []
    transform = il.non_gt_transform
    monkeypatch.setattr(il, "non_gt_transform",
                        lambda q, y, v: (seen.append(q.detach()), transform(q, y, v))[1])
    torch.manual_seed(0)
    model = build_model("resnet8", 10, 3).train()
    x, y = torch.randn(32, 3, 16, 16), torch.randint(0, 10, (32,))
    for explainer in ("gradcam", "input_gradient"):
        for mode in ("softmax", "fixed_gt"):
            cfg = IntrospectiveConfig(explainer=explainer, target_mode=mode)
            targets = []
            for amp in (False, True):
                method = il.Introspective(copy.deepcopy(model), cfg)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                    if amp:
                        _, maps, _ = method.explain(x, y)
                        assert maps.dtype == torch.float32
                    method.step(x, y, 0)
                targets.append(seen[-1])
            assert targets[1].dtype == torch.float32
            torch.testing.assert_close(targets[1], targets[0], rtol=0, atol=0.02)


def test_evaluation_is_fp32_whatever_the_training_precision():
    """Reported accuracy, NLL and ECE come from fp32 logits also when training runs under
    amp: predict ignores the autocast dtype (bit-identical to the fp32 call)."""
    data, model = device_data(), _model().eval()
    fp32 = engine.predict(model, data, "test", 16)
    bf16 = engine.predict(model, data, "test", 16, engine.Accel(amp=torch.bfloat16))
    assert bf16.dtype == torch.float32 and torch.equal(bf16, fp32)


# ---- on a CUDA device (skipped on CPU-only machines; run by benchmarks/device_check.sh)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
def test_cuda_fast_path_trains_with_data_resident_on_the_device():
    cuda = torch.device("cuda")
    data = device_data("cuda")
    assert data.x["train"].is_cuda and data.x["train"].dtype == torch.uint8
    accel = engine.accel_for(RuntimeConfig(amp="auto", channels_last=True), cuda)
    assert accel.amp == (torch.bfloat16 if torch.cuda.is_bf16_supported() else None)
    method = KD(_model(0), _model(1), alpha=0.9, T=4.0)
    history = engine.fit(method, data, train_cfg(epochs=6), seed=0, progress=False, accel=accel)
    assert all(p.is_cuda and p.dtype == torch.float32 for p in method.models.parameters())
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
    assert history[-1]["test_acc"] > 50.0  # 4 classes: chance is 25%


@pytest.fixture
def restore_backend_flags(monkeypatch):
    """configure_runtime sets process-wide flags (deterministic algorithms, cuDNN
    autotuning, matmul precision): put them back so later tests see the defaults."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    precision = torch.get_float32_matmul_precision()
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
    yield
    torch.use_deterministic_algorithms(deterministic)
    torch.set_float32_matmul_precision(precision)


def test_deterministic_cuda_runs_fix_the_cublas_workspace(monkeypatch, restore_backend_flags):
    """Without CUBLAS_WORKSPACE_CONFIG, deterministic mode only warns and cuBLAS stays
    nondeterministic; the setting is made before the first matmul of the process."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    import os

    from pipeline.train import device

    monkeypatch.setattr(device, "select_device", lambda runtime: torch.device("cuda"))
    engine.configure_runtime(RuntimeConfig(device="cuda", deterministic=True))
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    engine.configure_runtime(RuntimeConfig(device="cuda", deterministic=False))
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    assert torch.backends.cudnn.benchmark  # autotuning only where reproducibility is off


def test_checkpoints_carry_only_the_current_cuda_devices_rng(monkeypatch):
    """A run resumed where fewer GPUs are visible (a packed worker sees one) restores the
    RNG of the device it runs on; older checkpoints held every visible device's."""
    from pipeline.train import state as train_state

    rng = torch.tensor([7], dtype=torch.uint8)
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda: rng)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", restored.append)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all",
                        lambda: pytest.fail("saved every device's RNG"))
    generator = torch.Generator()
    saved = train_state._rng_state(generator)
    assert saved["cuda"] is rng
    train_state._set_rng_state(saved, generator)
    train_state._set_rng_state({**saved, "cuda": [torch.tensor([1]), torch.tensor([2])]}, generator)
    assert [int(t[0]) for t in restored] == [7, 2]  # the old list: the current device's entry


@needs_cuda
def test_cuda_fp32_follows_the_cpu_run(restore_backend_flags):
    """Same seed, same data: CUDA fp32 tracks the CPU run. Loose tolerances: cuDNN may
    pick other convolution algorithms (and TF32 on Ampere and newer), so the trajectories
    drift apart in the last bits and grow from there over two epochs."""
    runs = []
    for device in ("cpu", "cuda"):
        engine.configure_runtime(RuntimeConfig(device=device, deterministic=True))
        data = device_data(device)
        runs.append(engine.fit(CE(_model()), data, train_cfg(epochs=2), seed=0, progress=False))
    for cpu_row, cuda_row in zip(*runs, strict=True):
        assert cuda_row["train_loss"] == pytest.approx(cpu_row["train_loss"], rel=2e-2)
        assert abs(cuda_row["test_acc"] - cpu_row["test_acc"]) <= 7.5  # 3 of 40 test images


@needs_cuda
def test_cuda_batched_input_gradients_equal_the_cpu_loop(monkeypatch):
    """One backward pass: equal up to float32 rounding (rtol 1e-3) once TF32, which keeps
    10 mantissa bits (~1e-3 relative per product), is off for the convolutions."""
    from pipeline.methods.explain import input_gradients

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)

    torch.manual_seed(1)
    model = build_model("resnet8", 4, 1).train()
    x = torch.randn(6, 1, 8, 8)
    grads = {}
    for device, batched in ((CPU, False), (torch.device("cuda"), True)):
        m = copy.deepcopy(model).to(device)
        xd = x.to(device).requires_grad_(True)
        grads[device.type] = input_gradients(m(xd), xd, batched=batched).cpu()
    torch.testing.assert_close(grads["cuda"], grads["cpu"], rtol=1e-3, atol=1e-5)
