"""Introspective learning: explainers against Captum and per-class autograd, soft targets,
the loss, and the mechanism check on data with a known class-similarity structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import InputXGradient, LayerGradCam, Saliency

from pipeline.core.models import build_model
from pipeline.core.prepared import Prepared
from pipeline.core.sections import SyntheticConfig
from pipeline.methods.analysis import partner_hits, similarity_report
from pipeline.methods.explain import gradcam_autograd, gradcam_linear, input_gradients, similarity
from pipeline.methods.introspective import Introspective
from pipeline.methods.registry.introspective import IntrospectiveConfig
from pipeline.methods.targets import kl_to_logits
from pipeline.prepare.datasets import make_synthetic, normalisation_stats, synthetic_groups
from pipeline.train import engine

from ..helpers import train_cfg


@pytest.fixture
def model_and_batch():
    torch.manual_seed(0)
    model = build_model("small_cnn", 5, 2, 0.25).eval()
    x = torch.randn(6, 2, 8, 8)
    return model, x


def test_gradcam_linear_matches_captum(model_and_batch):
    model, x = model_and_batch
    maps = gradcam_linear(model.features(x), model.fc.weight)
    cam = LayerGradCam(model, model.trunk)
    for c in range(5):
        ref = cam.attribute(x, target=c, relu_attributions=True)[:, 0]
        torch.testing.assert_close(maps[:, c], ref, rtol=1e-5, atol=1e-6)


def test_gradcam_autograd_matches_linear_and_top_k(model_and_batch):
    model, x = model_and_batch
    logits, fmap = model.forward_features(x)
    full = gradcam_linear(fmap, model.fc.weight)
    torch.testing.assert_close(gradcam_autograd(logits, fmap), full, rtol=1e-5, atol=1e-6)
    classes = torch.tensor([[4, 0], [1, 2], [3, 3], [0, 1], [2, 4], [1, 0]])
    subset = gradcam_linear(fmap, model.fc.weight, classes)
    index = classes[:, :, None, None].expand(-1, -1, *full.shape[2:])
    torch.testing.assert_close(subset, full.gather(1, index))


def test_input_gradients_match_captum(model_and_batch):
    model, x = model_and_batch
    xg = x.clone().requires_grad_(True)
    grads = input_gradients(model(xg), xg)
    saliency, ixg = Saliency(model), InputXGradient(model)
    for c in range(5):
        torch.testing.assert_close(grads[:, c], saliency.attribute(x, target=c, abs=False),
                                   rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(grads[:, c] * x, ixg.attribute(x, target=c),
                                   rtol=1e-5, atol=1e-7)


def test_batched_vjp_equals_a_per_class_loop_in_train_mode():
    torch.manual_seed(1)
    model = build_model("small_cnn", 4, 1, 0.25).train()
    x = torch.randn(5, 1, 8, 8, requires_grad=True)
    logits = model(x)
    batched = input_gradients(logits, x, batched=True)
    torch.testing.assert_close(input_gradients(logits, x, batched=False), batched)
    for c in range(4):
        (loop,) = torch.autograd.grad(logits[:, c].sum(), x, retain_graph=True)
        torch.testing.assert_close(batched[:, c], loop, rtol=1e-5, atol=1e-7)


def test_similarity_kinds():
    maps = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [2.0, 0.0]]])
    ref = torch.tensor([[1.0, 0.0]])
    torch.testing.assert_close(similarity(maps, ref, "cosine"),
                               torch.tensor([[1.0, 2 ** -0.5, 1.0]]))
    # pearson: centred vectors; [1,1] is constant -> 0 similarity
    torch.testing.assert_close(similarity(maps, ref, "pearson"), torch.tensor([[1.0, 0.0, 1.0]]))


def _method(variant: str = "full", **cfg) -> Introspective:
    torch.manual_seed(0)
    return Introspective(build_model("small_cnn", 6, 1, 0.25), IntrospectiveConfig(**cfg), variant)


@pytest.mark.parametrize("explainer", ["gradcam", "input_gradient", "gradient_x_input"])
@pytest.mark.parametrize("mode", ["softmax", "fixed_gt"])
def test_soft_targets_are_valid(explainer, mode):
    method = _method(explainer=explainer, target_mode=mode, tau=0.1, gt_prob=0.7)
    x, y = torch.randn(8, 1, 8, 8), torch.tensor([0, 1, 2, 3, 4, 5, 0, 1])
    logits, maps, classes = method.explain(x, y)
    q = method.soft_targets(maps, classes, y, 6)
    assert not q.requires_grad
    torch.testing.assert_close(q.sum(1), torch.ones(8))
    assert (q >= 0).all()
    q_y = q.gather(1, y[:, None]).squeeze(1)
    if mode == "fixed_gt":
        torch.testing.assert_close(q_y, torch.full((8,), 0.7))
    else:  # s_y = 1 is the largest similarity, so the true class has the largest target
        assert (q_y >= q.max(1).values - 1e-6).all()


def test_top_k_explains_true_class_plus_k():
    method = _method(top_k=2)
    logits = torch.tensor([[0.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    classes = method.explained_classes(logits, torch.tensor([3]))
    assert classes.tolist() == [[3, 1, 2]]
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    _, maps, classes = method.explain(x, y)
    q = method.soft_targets(maps, classes, y, 6)
    assert ((q > 0).sum(1) <= 3).all()  # only explained classes get mass


def test_loss_is_convex_kd_form_with_detached_targets():
    method = _method(alpha=0.4, T=2.0, tau=0.2)
    x, y = torch.randn(8, 1, 8, 8), torch.tensor([0, 1, 2, 3, 4, 5, 0, 1])
    out = method.step(x, y, epoch=0)
    # independent recomputation: q from a separate pass, treated as a constant
    logits, maps, classes = method.explain(x, y)
    q = method.soft_targets(maps, classes, y, 6)
    ce = torch.nn.functional.cross_entropy(logits, y)
    expected = 0.6 * ce + 0.4 * 4.0 * kl_to_logits(q, logits, 2.0)
    torch.testing.assert_close(out.loss, expected)
    params = list(method.student.parameters())
    got = torch.autograd.grad(out.loss, params)
    ref = torch.autograd.grad(expected, params)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b)  # no gradient flows through the targets


def test_warmup_and_variants():
    method = _method(alpha=0.5, warmup_epochs=2, variant="uniform_non_gt")
    x, y = torch.randn(8, 1, 8, 8), torch.tensor([0, 1, 2, 3, 4, 5, 0, 1])
    assert float(method.step(x, y, epoch=1).terms["introspective"]) == 0.0
    assert float(method.step(x, y, epoch=2).terms["introspective"].detach()) > 0.0
    stats = method.epoch_metrics()
    assert 0 < stats["target_gt_prob"] <= 1 and stats["target_entropy"] > 0
    assert method.epoch_metrics() == {}  # reset after reading


def test_similarity_report_hand_made():
    il = np.array([[0.8, 0.15, 0.05, 0.0], [0.1, 0.8, 0.0, 0.1],
                   [0.0, 0.05, 0.8, 0.15], [0.1, 0.0, 0.1, 0.8]])
    assert partner_hits(il, [0, 0, 1, 1]) == pytest.approx(0.75)  # class 1 prefers class 3
    report = similarity_report(il, il, [0, 0, 1, 1])
    assert report["similarity_rank_corr_teacher"] == pytest.approx(1.0)
    assert report["similarity_gt_mass"] == pytest.approx(0.8)


def test_mechanism_il_learns_the_designed_class_similarity():
    """On `synthetic` data classes come in pairs sharing a pattern. Criterion: after a
    short IL training, for at least 8 of the 10 classes the most similar other class in
    the learned similarity matrix (test set, mean self-explanation target) is the partner;
    the same network untrained manages at most 4 (chance is 1/9 per class)."""
    cfg = SyntheticConfig(num_classes=10, group_size=2, image_size=12, train_per_class=60,
                          test_per_class=30, noise=0.8, class_strength=0.3, seed=0)
    arrays = make_synthetic(cfg)
    arrays["x_val"], arrays["y_val"] = arrays["x_train"][:0], arrays["y_train"][:0]
    mean, std = normalisation_stats(arrays["x_train"])
    meta = {"classes": [str(c) for c in range(10)], "mean": mean, "std": std,
            "shape": [1, 12, 12]}
    data = engine.DeviceData(Prepared(arrays, meta), torch.device("cpu"))
    torch.manual_seed(0)
    method = Introspective(build_model("small_cnn", 10, 1, 0.5),
                           IntrospectiveConfig(tau=0.1, alpha=0.5))
    x, y = data.batch("test", slice(None))
    untrained = partner_hits(method.similarity_matrix(x, y, 10), synthetic_groups(cfg))
    assert untrained <= 0.4
    engine.fit(method, data, train_cfg(epochs=8, lr=0.05), seed=0, progress=False)
    matrix = method.similarity_matrix(x, y, 10)
    hits = partner_hits(matrix, synthetic_groups(cfg))
    assert hits >= 0.8, f"partner ranked first for only {hits:.0%} of classes"
