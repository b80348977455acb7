"""Online self-explanations: one explanation map per (image, class), batched over classes.

* ``gradcam``: Grad-CAM (Selvaraju et al. 2017) on the last feature map ``A``.
  For our global-average-pool + linear heads ``dz_c/dA_k = W_ck / HW`` exactly,
  so every class map is ``ReLU(sum_k W_ck A_k) / HW``: one tensor product on the
  training forward's feature map, no extra forward or backward.
  ``gradcam_autograd`` is the general path (any head) and the reference.
* ``input_gradient`` (``dz_c/dx``) and ``gradient_x_input`` (``x * dz_c/dx``):
  one vector-Jacobian product per class, vmapped into one call on CUDA.

Explanations are detached: the soft targets built from them carry no gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def gather_classes(classes: Tensor | None, n: int, num_classes: int, device) -> Tensor:
    """``(N, K)`` class indices to explain (all classes when ``classes`` is None)."""
    if classes is None:
        return torch.arange(num_classes, device=device).expand(n, num_classes)
    return classes


def gradcam_linear(fmap: Tensor, weight: Tensor, classes: Tensor | None = None) -> Tensor:
    """Grad-CAM maps ``(N, K, H, W)`` for a GAP + linear head with ``weight`` ``(C, D)``."""
    fmap, weight = fmap.detach(), weight.detach()
    scale = 1.0 / (fmap.shape[2] * fmap.shape[3])
    if classes is None:
        maps = torch.einsum("ndhw,cd->nchw", fmap, weight)
    else:
        maps = torch.einsum("ndhw,nkd->nkhw", fmap, weight[classes])
    return F.relu(maps * scale)


def _one_hot_batch(logits: Tensor, classes: Tensor) -> Tensor:
    """``(K, N, C)`` grad_outputs selecting class ``classes[n, k]`` for sample ``n``."""
    k = classes.shape[1]
    eye = torch.zeros(k, *logits.shape, dtype=logits.dtype, device=logits.device)
    eye.scatter_(2, classes.T.unsqueeze(-1), 1.0)
    return eye


def gradcam_autograd(logits: Tensor, fmap: Tensor, classes: Tensor | None = None) -> Tensor:
    """Grad-CAM for any head: ``ReLU(sum_k mean_hw(dz_c/dA_k) A_k)`` via batched VJPs."""
    classes = gather_classes(classes, logits.shape[0], logits.shape[1], logits.device)
    grads = torch.autograd.grad(logits, fmap, _one_hot_batch(logits, classes),
                                retain_graph=True, is_grads_batched=True)[0]  # (K, N, D, H, W)
    alpha = grads.mean(dim=(3, 4), keepdim=True)
    maps = F.relu((alpha * fmap.detach().unsqueeze(0)).sum(dim=2))  # (K, N, H, W)
    return maps.transpose(0, 1)


def input_gradients(logits: Tensor, x: Tensor, classes: Tensor | None = None,
                    batched: bool | None = None) -> Tensor:
    """``dz_c/dx`` for every explained class: ``(N, K, *x.shape[1:])``.

    ``x`` must require grad and ``logits`` depend on it. In train mode BatchNorm
    couples the samples of a batch; the gradient is that of the function trained.
    ``batched`` (default: on CUDA) runs all classes as one vmapped VJP; on CPU a
    loop of VJPs measured 1.8x faster (benchmarks/il_overhead.py), so it is used there.
    """
    classes = gather_classes(classes, logits.shape[0], logits.shape[1], logits.device)
    outputs = _one_hot_batch(logits, classes)
    if batched is None:
        batched = logits.is_cuda
    if batched:
        grads = torch.autograd.grad(logits, x, outputs, retain_graph=True,
                                    is_grads_batched=True)[0]
    else:
        grads = torch.stack([torch.autograd.grad(logits, x, out, retain_graph=True)[0]
                             for out in outputs])
    return grads.transpose(0, 1)


def similarity(maps: Tensor, reference: Tensor, kind: str = "cosine") -> Tensor:
    """Similarity of each class map ``(N, K, ...)`` to a reference map ``(N, ...)``: ``(N, K)``."""
    a = maps.flatten(2)
    b = reference.flatten(1).unsqueeze(1)
    if kind == "pearson":
        a = a - a.mean(dim=2, keepdim=True)
        b = b - b.mean(dim=2, keepdim=True)
    elif kind != "cosine":
        raise ValueError(f"unknown similarity '{kind}' (known: cosine, pearson)")
    return F.cosine_similarity(a, b.expand_as(a), dim=2, eps=1e-8)
