"""Loss math of every method against hand computations, autograd and torch references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.methods.confidence_penalty import ConfidencePenalty
from pipeline.methods.dml import DML
from pipeline.methods.kd import KD
from pipeline.methods.label_smoothing import LabelSmoothing
from pipeline.methods.targets import kl_to_logits, nckd, non_gt_transform, tckd
from pipeline.methods.tf_kd_virtual import TFKDVirtual, virtual_teacher


def _softmax(row, T=1.0):
    e = [math.exp(v / T) for v in row]
    return [v / sum(e) for v in e]


def _kl(q, p):
    return sum(a * math.log(a / b) for a, b in zip(q, p, strict=True) if a > 0)


@pytest.fixture
def batch():
    torch.manual_seed(0)
    t = torch.softmax(torch.randn(64, 6) * 2, dim=1)
    y = torch.randint(0, 6, (64,))
    return t, y


@pytest.mark.parametrize("variant", ["full", "uniform_non_gt", "shuffled_non_gt"])
def test_variants_are_distributions_keeping_t_y(batch, variant):
    t, y = batch
    q = non_gt_transform(t, y, variant)
    torch.testing.assert_close(q.sum(1), torch.ones(64))
    assert (q >= 0).all()
    torch.testing.assert_close(q.gather(1, y[:, None]), t.gather(1, y[:, None]))


def test_uniform_non_gt_spreads_the_same_mass_evenly(batch):
    t, y = batch
    q = non_gt_transform(t, y, "uniform_non_gt")
    for i in range(len(y)):
        others = [q[i, c].item() for c in range(6) if c != y[i]]
        assert max(others) - min(others) < 1e-7
        assert sum(others) == pytest.approx(1 - t[i, y[i]].item(), abs=1e-6)


def test_shuffled_keeps_values_and_destroys_similarity():
    torch.manual_seed(1)
    n, c = 2000, 10
    y = torch.randint(0, c, (n,))
    # A teacher with class similarity: non-GT mass follows a fixed profile per true class.
    profile = torch.softmax(torch.randn(c, c) * 2, dim=1)
    t = 0.6 * F.one_hot(y, c) + 0.4 * profile[y] * (1 - F.one_hot(y, c))
    t = t / t.sum(1, keepdim=True)
    q = non_gt_transform(t, y, "shuffled_non_gt")
    mask = ~F.one_hot(y, c).bool()
    orig, shuf = t[mask].view(n, c - 1), q[mask].view(n, c - 1)
    torch.testing.assert_close(orig.sort(1).values, shuf.sort(1).values)  # same multiset

    def mean_corr(a, b):
        a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
        return float(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).mean())

    assert mean_corr(orig, orig) == pytest.approx(1.0)
    assert abs(mean_corr(orig, shuf)) < 0.1
    # the mean target per true class no longer carries the teacher's profile
    class_means = torch.stack([q[y == k].mean(0) for k in range(c)])
    off = ~torch.eye(c, dtype=torch.bool)
    original_means = torch.stack([t[y == k].mean(0) for k in range(c)])
    assert class_means[off].std() < 0.3 * original_means[off].std()


def test_kl_to_logits_hand_computed():
    q = [0.7, 0.2, 0.1]
    z = [2.0, 1.0, -1.0]
    expected = _kl(q, _softmax(z, T=2.0))
    got = kl_to_logits(torch.tensor([q]), torch.tensor([z]), T=2.0)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_decoupled_kd_identity(batch):
    """Zhao et al. (2022), eq. (1)-(5): KL(t||p) = TCKD + (1 - t_y) * NCKD, per sample."""
    t, y = batch
    z = torch.randn(64, 6) * 3
    for i in range(8):
        ti, zi, yi = t[i:i + 1], z[i:i + 1], y[i:i + 1]
        full = kl_to_logits(ti, zi, T=3.0)
        decomposed = tckd(ti, zi, yi, 3.0) + (1 - ti[0, yi]) * nckd(ti, zi, yi, 3.0)
        torch.testing.assert_close(full, decomposed.squeeze(), rtol=1e-5, atol=1e-6)


def test_tckd_nckd_hand_computed():
    t = [0.6, 0.3, 0.1]
    z = [1.0, 0.5, -0.5]
    p = _softmax(z)
    expected_tckd = _kl([t[1], 1 - t[1]], [p[1], 1 - p[1]])
    t_hat = [t[0] / (1 - t[1]), t[2] / (1 - t[1])]
    expected_nckd = _kl(t_hat, _softmax([z[0], z[2]]))
    args = (torch.tensor([t], dtype=torch.float64), torch.tensor([z], dtype=torch.float64),
            torch.tensor([1]))
    assert float(tckd(*args)) == pytest.approx(expected_tckd, rel=1e-6)
    assert float(nckd(*args)) == pytest.approx(expected_nckd, rel=1e-6)


class Recorder(nn.Module):
    """A linear model that remembers the last input it saw."""

    def __init__(self, d: int = 12, c: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(d, c)
        self.seen: torch.Tensor | None = None

    def forward(self, x):
        self.seen = x
        return self.fc(x.flatten(1))


def test_kd_loss_hand_computed_and_teacher_frozen():
    student, teacher = Recorder(seed=1), Recorder(seed=2)
    method = KD(student, teacher, alpha=0.3, T=2.0)
    method.train()
    assert not teacher.training and student.training
    x, y = torch.randn(2, 12), torch.tensor([0, 2])
    out = method.step(x, y, epoch=0)
    assert teacher.seen is student.seen is x  # the teacher saw the student's batch
    zs, zt = student(x).tolist(), teacher(x).tolist()
    ce = sum(-math.log(_softmax(zs[i])[y[i]]) for i in range(2)) / 2
    kl = sum(_kl(_softmax(zt[i], 2.0), _softmax(zs[i], 2.0)) for i in range(2)) / 2
    assert out.loss.item() == pytest.approx(0.7 * ce + 0.3 * 4.0 * kl, rel=1e-5)
    assert set(out.terms) == {"ce", "kd"}
    out.loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())
    assert [p for p in method.models.parameters()] == list(student.parameters())


@pytest.mark.parametrize("variant", ["full", "uniform_non_gt", "shuffled_non_gt",
                                     "target_only", "non_target_only"])
def test_every_kd_variant_trains_only_the_student(variant):
    student, teacher = Recorder(seed=1), Recorder(seed=2)
    out = KD(student, teacher, 0.5, 4.0, variant).step(torch.randn(5, 12),
                                                      torch.tensor([0, 1, 2, 0, 1]), 0)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert student.fc.weight.grad.abs().sum() > 0 and teacher.fc.weight.grad is None


def test_label_smoothing_matches_torch():
    model = Recorder()
    x, y = torch.randn(6, 12), torch.tensor([0, 1, 2, 0, 1, 2])
    out = LabelSmoothing(model, 0.2).step(x, y, 0)
    reference = F.cross_entropy(model(x), y, label_smoothing=0.2)
    torch.testing.assert_close(out.loss, reference)


def test_confidence_penalty_hand_computed():
    model = Recorder()
    x, y = torch.randn(2, 12), torch.tensor([1, 2])
    out = ConfidencePenalty(model, beta=0.5).step(x, y, 0)
    z = model(x).tolist()
    ce = sum(-math.log(_softmax(z[i])[y[i]]) for i in range(2)) / 2
    ent = sum(-sum(p * math.log(p) for p in _softmax(z[i])) for i in range(2)) / 2
    assert out.loss.item() == pytest.approx(ce - 0.5 * ent, rel=1e-5)


def test_virtual_teacher():
    q = virtual_teacher(torch.tensor([2]), 5, 0.8)
    torch.testing.assert_close(q, torch.tensor([[0.05, 0.05, 0.8, 0.05, 0.05]]))


def test_tf_kd_softens_the_virtual_teacher_by_hand():
    """Yuan et al.'s Tf-KD_reg: target softmax(p^d / T), student at T, times T^2 (ours)."""
    z = [[1.0, -0.5, 2.0, 0.3, 0.0], [0.2, 0.1, -1.0, 0.4, 1.5]]
    y, T, cp, alpha = [2, 4], 2.0, 0.8, 0.5
    method = TFKDVirtual(nn.Identity(), alpha=alpha, T=T, correct_prob=cp)
    out = method.step(torch.tensor(z), torch.tensor(y), 0)
    expected = 0.0
    for row, label in zip(z, y, strict=True):
        pd = [cp if c == label else (1 - cp) / 4 for c in range(5)]
        q = _softmax(pd, T)  # the softened virtual teacher: nearly uniform at T = 2
        expected += alpha * T * T * _kl(q, _softmax(row, T)) / 2
    assert q[4] == pytest.approx(math.exp(0.4) / (math.exp(0.4) + 4 * math.exp(0.025)))
    assert out.terms["tf_kd"].item() == pytest.approx(expected, rel=1e-5)


def test_unsoftened_tf_kd_at_t1_is_label_smoothing():
    """At T = 1 without softening, Tf-KD = LS with eps = alpha C (1 - cp) / (C - 1) (+ const)."""
    torch.manual_seed(3)
    z = torch.randn(8, 5)
    y = torch.randint(0, 5, (8,))
    alpha, cp = 0.4, 0.9
    grads = []
    for method in (TFKDVirtual(nn.Identity(), alpha, 1.0, cp, soften_teacher=False),
                   LabelSmoothing(nn.Identity(), alpha * 5 * (1 - cp) / 4)):
        logits = z.clone().requires_grad_(True)
        method.step(logits, y, 0).loss.backward()
        grads.append(logits.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_unsoftened_tf_kd_above_t1_is_rejected(base_raw):
    import copy

    from pipeline.core.config import parse_params
    from pipeline.core.errors import ConfigError

    raw = copy.deepcopy(base_raw)
    raw["tf_kd_virtual"].update(T=4.0, soften_teacher=False)
    with pytest.raises(ConfigError, match="tf_kd_virtual"):
        parse_params(raw)


def test_dml_detaches_the_other_peer():
    peer0, peer1 = Recorder(seed=1), Recorder(seed=2)
    out = DML(peer0, peer1, alpha=0.5).step(torch.randn(4, 12), torch.tensor([0, 1, 2, 0]), 0)
    out.terms["peer0_kl"].backward()
    assert peer1.fc.weight.grad is None  # nothing flows into the other peer
    assert peer0.fc.weight.grad.abs().sum() > 0


def test_dml_original_form_sums():
    peer0, peer1 = Recorder(seed=1), Recorder(seed=2)
    x, y = torch.randn(4, 12), torch.tensor([0, 1, 2, 0])
    convex = DML(peer0, peer1, alpha=0.5, form="convex").step(x, y, 0)
    original = DML(peer0, peer1, alpha=0.5, form="original").step(x, y, 0)
    torch.testing.assert_close(original.loss, 2 * convex.loss)


def test_every_registered_method_equals_ce_for_one_hot_targets(base_raw):
    """Convex form, checked over the whole registry: one-hot targets make each loss plain CE,
    so no method trains at a different loss scale than CE."""
    import copy

    from pipeline.core.config import parse_params
    from pipeline.core.models import build_model
    from pipeline.methods import REGISTRY, build_method

    raw = copy.deepcopy(base_raw)
    raw["kd"].update(T=1.0)
    raw["tf_kd_virtual"].update(T=1.0, correct_prob=1.0, soften_teacher=False)
    raw["label_smoothing"].update(epsilon=0.0)
    raw["confidence_penalty"].update(beta=0.0)
    raw["introspective"].update(target_mode="softmax", tau=1e-4)  # q -> one-hot on y
    # PS-KD (epoch 0's target is the label) and online LS with S starting as the identity
    # are CE in their first epoch (the authors' online LS starts from zeros: its first
    # epoch is (1 - alpha) CE, checked by hand below); CS-KD's target is the model's own
    # prediction on another sample, never one-hot: its weight is zeroed here and its
    # convex form checked by hand below
    raw["cs_kd"].update(alpha=0.0)
    raw["online_label_smoothing"].update(form="identity")
    params = parse_params(raw)
    torch.manual_seed(0)
    x, y = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])

    class OneHot(nn.Module):  # a teacher / peer whose output is the one-hot label
        def forward(self, inp):
            return 1e4 * F.one_hot(y, 3).float()

    checked = set()
    for name in REGISTRY:
        torch.manual_seed(1)
        student = build_model("small_cnn", 3, 1, 0.25)
        make = iter([student, OneHot()]).__next__
        method = build_method(name, params, make, OneHot())
        method.bind(len(y), 3, 10, "cpu")
        method.index = torch.arange(len(y))
        out = method.step(x, y, epoch=0)
        ce = F.cross_entropy(student(x), y)
        terms = {k: v for k, v in out.terms.items() if not k.startswith("peer1_")}
        torch.testing.assert_close(sum(terms.values()), ce, rtol=1e-4, atol=1e-4, msg=name)
        checked.add(name)
    assert checked == set(REGISTRY)


# ---------------------------------------------------------------- self-distillation peers


def _ce_by_hand(row, label):
    return -math.log(_softmax(row)[label])


def _entropy(q):
    return -sum(v * math.log(v) for v in q if v > 0)


def _soft_ce(q, row):
    """The authors' loss form: cross-entropy with a soft target, ``-sum q log p``."""
    return -sum(v * math.log(p) for v, p in zip(q, _softmax(row), strict=True))


def test_ps_kd_is_the_authors_schedule_and_target_by_hand():
    """Kim et al.'s code: soft target ``(1 - a_t) y + a_t p_{t-1}`` with
    ``a_t = alpha_T (t + 1) / E`` for 0-based epochs t (``alpha_T`` at the last epoch), and
    the label itself where no prediction exists yet (epoch 0). Our convex form equals their
    soft cross-entropy minus the constant ``a_t H(p_{t-1})``."""
    from pipeline.methods.ps_kd import PSKD

    z0 = [[1.0, 0.0, -1.0], [0.5, 0.2, 0.1], [0.0, 2.0, 0.3], [-0.4, 0.1, 0.9]]
    z2 = [[0.3, 0.1, -0.2], [1.5, -0.2, 0.0], [0.2, 0.4, 0.6], [0.0, -1.0, 1.0]]
    y = [0, 1, 1, 2]
    method = PSKD(nn.Identity(), alpha_T=0.8)
    method.bind(4, 3, epochs=4, device="cpu")
    assert [method.alpha(t) for t in range(4)] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    method.index = torch.tensor([2, 0, 3, 1])  # rows of the batch are samples 2, 0, 3, 1
    first = method.step(torch.tensor(z0), torch.tensor(y), epoch=0)
    # epoch 0: the target is (1 - 0.2) y + 0.2 y = y, so the loss is plain CE
    assert first.loss.item() == pytest.approx(
        sum(_ce_by_hand(r, c) for r, c in zip(z0, y, strict=True)) / 4, rel=1e-5)
    # two epochs later the same samples come in another order: sample s is matched to
    # its own prediction from the last time it was seen
    order = torch.tensor([0, 1, 2, 3])
    y_of_sample = {2: 0, 0: 1, 3: 1, 1: 2}
    seen = {2: z0[0], 0: z0[1], 3: z0[2], 1: z0[3]}
    method.index = order
    y2 = [y_of_sample[s] for s in range(4)]
    out = method.step(torch.tensor(z2), torch.tensor(y2), epoch=2)
    a = 0.6
    authors = 0.0
    for s in range(4):
        prev = _softmax(seen[s])
        target = [(1 - a) * (c == y2[s]) + a * prev[c] for c in range(3)]
        authors += _soft_ce(target, z2[s]) - a * _entropy(prev)
    assert out.loss.item() == pytest.approx(authors / 4, rel=1e-5)


def test_online_label_smoothing_is_the_authors_form_by_hand():
    """The authors' code: ``S`` starts at zeros (epoch 1's soft term is 0) and is rebuilt
    each epoch from the correct samples' mean prediction, a class with none getting a zero
    row. Their ``alpha CE + (1 - alpha) soft-CE`` is ours with alpha swapped, up to the
    constant ``alpha H(S[y])``."""
    from pipeline.methods.online_label_smoothing import OnlineLabelSmoothing

    method = OnlineLabelSmoothing(nn.Identity(), alpha=0.5)
    method.bind(6, 3, epochs=3, device="cpu")
    z = [[2.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 1.0, 0.2], [3.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
    y = [0, 0, 1, 1, 0]  # rows 0, 1 and 2 are right; 3 (class 1) and 4 (class 0) are wrong
    first = method.step(torch.tensor(z), torch.tensor(y), epoch=0)
    assert first.loss.item() == pytest.approx(
        0.5 * sum(_ce_by_hand(r, c) for r, c in zip(z, y, strict=True)) / 5, rel=1e-5)
    row0 = [(a + b) / 2 for a, b in zip(_softmax(z[0]), _softmax(z[1]), strict=True)]
    row1 = _softmax(z[2])
    # epoch 2: only class 1 is predicted right (by [0.5, 2.0, 0.0]); class 0's row empties
    z1, y1 = [[0.1, 0.2, 0.3], [0.5, 2.0, 0.0], [0.0, 0.3, 0.0]], [0, 1, 2]
    out = method.step(torch.tensor(z1), torch.tensor(y1), epoch=1)
    soft = [row0, row1, [0.0, 0.0, 0.0]]  # class 2 had no correct sample: a zero row
    torch.testing.assert_close(method.soft, torch.tensor(soft))
    expected = sum(0.5 * _ce_by_hand(r, c) + 0.5 * (_soft_ce(soft[c], r) - _entropy(soft[c]))
                   for r, c in zip(z1, y1, strict=True)) / 3
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    method.step(torch.tensor(z1), torch.tensor(y1), epoch=2)
    rebuilt = [[0.0] * 3, _softmax(z1[1]), [0.0] * 3]  # class 0: no correct sample in epoch 2
    torch.testing.assert_close(method.soft, torch.tensor(rebuilt))


def test_online_label_smoothing_identity_form_keeps_rows_by_hand():
    """``form: identity``: ``S`` starts as the identity (epoch 1 is plain CE) and a class
    without a correct sample keeps its row."""
    from pipeline.methods.online_label_smoothing import OnlineLabelSmoothing

    method = OnlineLabelSmoothing(nn.Identity(), alpha=0.5, form="identity")
    method.bind(6, 3, epochs=3, device="cpu")
    z = [[2.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 1.0, 0.2], [3.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
    y = [0, 0, 1, 1, 0]
    first = method.step(torch.tensor(z), torch.tensor(y), epoch=0)
    assert first.loss.item() == pytest.approx(
        sum(_ce_by_hand(r, c) for r, c in zip(z, y, strict=True)) / 5, rel=1e-5)
    row0 = [(a + b) / 2 for a, b in zip(_softmax(z[0]), _softmax(z[1]), strict=True)]
    z_next, y_next = [[0.1, 0.2, 0.3], [0.5, 0.0, -0.5], [0.0, 0.3, 0.0]], [0, 1, 2]
    out = method.step(torch.tensor(z_next), torch.tensor(y_next), epoch=1)
    soft = [row0, _softmax(z[2]), [0.0, 0.0, 1.0]]  # class 2 keeps its identity row
    torch.testing.assert_close(method.soft, torch.tensor(soft))
    expected = sum(0.5 * _ce_by_hand(r, c) + 0.5 * _kl(soft[c], _softmax(r))
                   for r, c in zip(z_next, y_next, strict=True)) / 3
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)


def test_cs_kd_pulls_towards_a_same_class_sample_by_hand():
    from pipeline.methods.cs_kd import CSKD, same_class_partner

    y = torch.tensor([1, 0, 1, 2])  # rows 0 and 2 pair; rows 1 and 3 have no partner
    torch.manual_seed(0)
    assert same_class_partner(y).tolist() == [2, -1, 0, -1]
    z = [[0.3, 1.0, -0.2], [1.0, 0.0, 0.5], [0.0, 2.0, 0.1], [0.2, 0.2, 0.9]]
    T, alpha = 2.0, 0.3
    out = CSKD(nn.Identity(), alpha, T).step(torch.tensor(z), y, 0)
    ce = sum(_ce_by_hand(r, int(c)) for r, c in zip(z, y, strict=True)) / 4
    kl = (_kl(_softmax(z[2], T), _softmax(z[0], T)) + _kl(_softmax(z[0], T), _softmax(z[2], T)))
    assert out.loss.item() == pytest.approx((1 - alpha) * ce + alpha * T * T * kl / 4, rel=1e-5)


def test_cs_kd_target_carries_no_gradient():
    from pipeline.methods.cs_kd import CSKD

    z = torch.tensor([[0.3, 1.0], [0.0, 2.0]], requires_grad=True)
    out = CSKD(nn.Identity(), alpha=1.0, T=1.0).step(z, torch.tensor([1, 1]), 0)
    out.loss.backward()
    # d/dz_i KL(sg(p_j) || p_i) = p_i - p_j for row i only
    p = torch.softmax(z.detach(), dim=1)
    torch.testing.assert_close(z.grad, torch.stack([p[0] - p[1], p[1] - p[0]]) / 2)
