"""ECE, NLL and top-k against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.core.metrics import classification_metrics, expected_calibration_error, topk_accuracy


def test_ece_hand_computed():
    # Four samples; confidences 0.9, 0.9 (bin 14: (0.8667, 0.9333]) and 0.6, 0.6 (bin 9).
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    labels = torch.tensor([0, 1, 0, 0])
    # bin 0.9: acc 1/2, conf 0.9 -> |0.5-0.9| * 2/4 = 0.2
    # bin 0.6: predictions 0 (correct), 1 (wrong): acc 0.5, conf 0.6 -> 0.1 * 2/4 = 0.05
    assert expected_calibration_error(probs, labels) == pytest.approx(0.25)


def test_ece_bin_edges_are_right_closed():
    # confidence exactly 1/15*k sits in bin k-1 ((lo, hi]); a perfect calibration gives 0
    probs = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert expected_calibration_error(probs, torch.tensor([0, 0])) == pytest.approx(0.0)
    assert expected_calibration_error(probs, torch.tensor([1, 1])) == pytest.approx(1.0)


def test_nll_acc_top5_hand_computed():
    logits = torch.log(torch.tensor([
        [0.7, 0.1, 0.05, 0.05, 0.04, 0.03, 0.01, 0.01, 0.005, 0.005],
        [0.1, 0.2, 0.3, 0.4, 0.0 + 1e-12, 0, 0, 0, 0, 0],
    ]).clamp_min(1e-12))
    labels = torch.tensor([0, 1])
    m = classification_metrics(logits, labels, "test_")
    expected_nll = -(math.log(0.7) + math.log(0.2 / (1 + 1e-12 * 6))) / 2
    assert m["test_nll"] == pytest.approx(expected_nll, rel=1e-6)
    assert m["test_acc"] == pytest.approx(50.0)  # second sample predicts class 3
    assert m["test_top5"] == pytest.approx(100.0)
    assert set(m) == {"test_acc", "test_nll", "test_ece", "test_top5"}


def test_top5_only_with_ten_or_more_classes():
    m = classification_metrics(torch.randn(4, 5), torch.tensor([0, 1, 2, 3]))
    assert "top5" not in m


def test_topk():
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    assert topk_accuracy(logits, torch.tensor([0, 1]), 1) == pytest.approx(0.5)
    assert topk_accuracy(logits, torch.tensor([1, 0]), 2) == pytest.approx(0.5)
