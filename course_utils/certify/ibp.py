"""Interval bound propagation (IBP): a box around the input, pushed through the network layer by layer.

For x in the ℓ∞ ball B(x0, ε) ∩ [0, 1]^d, every pre-activation lies in an interval [l, u] that the
rules below compute; the interval of the logits is then a box that contains every output the
attacker can reach. If the true class's lower bound beats every other class's upper bound (or, tighter,
every margin z_y − z_j is provably positive), no attack in the ball can succeed: a certificate.

One rule per kind of layer, all written in centre/radius form: an affine map f(v) = Wv + b sends the box
with centre c and radius r to the box with centre f(c) and radius |W| r, which is exact for one affine
layer; a ReLU is monotone, so it maps [l, u] to [relu(l), relu(u)], also exact per unit. What is lost is
the correlation between units: after two layers the box contains many outputs no input produces, and the
slack compounds with depth.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks.core import check_number
from ..images import check_batch, check_images
from ..models import Normalize

Box = tuple[torch.Tensor, torch.Tensor]  # (lower, upper), same shape

SUPPORTED = (nn.Linear, nn.Conv2d, nn.ReLU, nn.Flatten, Normalize)


def input_box(x: torch.Tensor, eps: float) -> Box:
    """The attacker's set for ℓ∞ budget ε as a box: B(x, ε) ∩ [0, 1]^d (clipping is part of the threat model)."""
    check_images(x)
    eps = check_number("eps", eps)
    if eps > 1:
        raise ValueError(f"eps={eps} is larger than the whole [0, 1] pixel range; ℓ∞ budgets are in pixel units")
    return (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)


def interval_linear(weight: torch.Tensor, bias: torch.Tensor | None, lower: torch.Tensor, upper: torch.Tensor) -> Box:
    """The exact range of v ↦ W v + b over the box lower ≤ v ≤ upper (rows of v are examples).

    Each output unit's range is attained at a corner of the box: take u_j where W_ij > 0 and l_j where
    W_ij < 0 for the maximum, and the other way round for the minimum. Written as centre ± |W| radius.
    """
    centre, radius = (upper + lower) / 2, (upper - lower) / 2
    mid = F.linear(centre, weight, bias)
    spread = F.linear(radius, weight.abs())
    return mid - spread, mid + spread


def interval_layer(layer: nn.Module, lower: torch.Tensor, upper: torch.Tensor) -> Box:
    """Bounds on layer(v) for every v in the box [lower, upper], for one of the `SUPPORTED` layers."""
    if isinstance(layer, nn.Linear):
        return interval_linear(layer.weight, layer.bias, lower, upper)
    if isinstance(layer, nn.Conv2d):
        if layer.padding_mode != "zeros":
            raise ValueError(f"IBP supports zero-padded convolutions only, got padding_mode={layer.padding_mode!r}")
        centre, radius = (upper + lower) / 2, (upper - lower) / 2
        conv = lambda v, w, b: F.conv2d(v, w, b, layer.stride, layer.padding, layer.dilation, layer.groups)
        mid, spread = conv(centre, layer.weight, layer.bias), conv(radius, layer.weight.abs(), None)
        return mid - spread, mid + spread
    if isinstance(layer, Normalize):  # std > 0 (Normalize checks it), so the order of the bounds is kept
        return layer(lower), layer(upper)
    if isinstance(layer, (nn.ReLU, nn.Flatten)):  # monotone, elementwise or a reshape
        return layer(lower), layer(upper)
    raise ValueError(f"IBP has no rule for {type(layer).__name__}; supported layers: "
                     + ", ".join(t.__name__ for t in SUPPORTED) + " (inside nn.Sequential)")


def layers_of(model: nn.Module) -> list[nn.Module]:
    """The model's layers in order, nested nn.Sequential flattened; a ValueError for anything IBP cannot follow."""
    if isinstance(model, nn.Sequential):
        return [layer for child in model for layer in layers_of(child)]
    if isinstance(model, SUPPORTED):
        return [model]
    raise ValueError(f"IBP needs an nn.Sequential of {', '.join(t.__name__ for t in SUPPORTED)}; "
                     f"got a {type(model).__name__}")


def layer_bounds(model: nn.Module, lower: torch.Tensor, upper: torch.Tensor) -> list[Box]:
    """The box after every layer of `model`, starting from [lower, upper] (the last one bounds the logits)."""
    boxes = []
    for layer in layers_of(model):
        lower, upper = interval_layer(layer, lower, upper)
        boxes.append((lower, upper))
    return boxes


def unstable_counts(model: nn.Module, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Per image, the ReLUs whose input interval straddles 0 over the ball: the units whose sign an attacker
    may be able to flip, and the binary variables an exact verifier needs (`certify.milp`)."""
    layers = layers_of(model)
    lower, upper = input_box(x, eps)
    count = torch.zeros(len(x), dtype=torch.long, device=x.device)
    with torch.no_grad():
        for layer in layers:
            if isinstance(layer, nn.ReLU):
                count += ((lower < 0) & (upper > 0)).flatten(1).sum(1)
            lower, upper = interval_layer(layer, lower, upper)
    return count


def logit_bounds(model: nn.Module, x: torch.Tensor, eps: float) -> Box:
    """Lower and upper bounds of every logit over the ℓ∞ ball of radius ε around each image of x (clipped to [0, 1])."""
    return layer_bounds(model, *input_box(x, eps))[-1]


def margin_lower_bounds(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """N×K lower bounds of the margins z_y − z_j over the ball (0 in column y); all positive ⇔ certified.

    The last linear layer is folded into the margin before bounding ("elision", Gowal et al. 2018): the
    margin (w_y − w_j)·h + b_y − b_j is one linear function of the last hidden layer h, and its exact range
    over h's box is much tighter than the difference of the two logits' separate bounds.
    """
    check_batch(x, y)
    layers = layers_of(model)
    lower, upper = input_box(x, eps)
    if not isinstance(layers[-1], nn.Linear):
        lo, hi = layer_bounds(nn.Sequential(*layers), lower, upper)[-1]
        margins = lo.gather(1, y[:, None]) - hi
    else:
        if len(layers) > 1:
            lower, upper = layer_bounds(nn.Sequential(*layers[:-1]), lower, upper)[-1]
        last = layers[-1]
        w = last.weight[y][:, None, :] - last.weight[None]  # N×K×hidden: w_y − w_j
        b = (last.bias[y][:, None] - last.bias[None]) if last.bias is not None else 0
        centre, radius = (upper + lower) / 2, (upper - lower) / 2
        margins = (w @ centre[..., None]).squeeze(-1) + b - (w.abs() @ radius[..., None]).squeeze(-1)
    return margins.scatter(1, y[:, None], 0.0)


def certified(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """A boolean per image: True when IBP proves that no x' in the ball (∩ [0, 1]) changes the prediction from y."""
    # In float64, on a copy: a float32 bound a rounding error above 0 must not certify a digit that is not robust.
    exact = copy.deepcopy(model).double()
    with torch.no_grad():
        margins = margin_lower_bounds(exact, x.double(), y, eps)
    others = torch.ones_like(margins, dtype=torch.bool).scatter(1, y[:, None], False)
    return torch.where(others, margins > 0, True).all(1)


def certified_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, batch_size: int = 500) -> float:
    """The fraction of (x, y) that IBP certifies at ε: a lower bound on robust accuracy."""
    done = [certified(model, x[i:i + batch_size], y[i:i + batch_size], eps) for i in range(0, len(y), batch_size)]
    return torch.cat(done).float().mean().item() if done else float("nan")


def worst_case_logits(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Logits of IBP's worst case for the loss: −(lower bound of z_y − z_j) in column j, 0 in column y.

    Cross-entropy on these is an upper bound on the cross-entropy of every input in the ball (Gowal et al.'s
    specification loss); it is differentiable in the weights, which is all IBP training needs.
    """
    return -margin_lower_bounds(model, x, y, eps)


def ibp_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, kappa: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Gowal et al.'s training loss κ·CE(z(x), y) + (1 − κ)·CE(ẑ(x, ε), y), and the clean logits z(x).

    κ = 1 is standard training; κ = 0.5 weighs the certified worst case as much as the clean fit."""
    if not 0.0 <= kappa <= 1.0:
        raise ValueError(f"kappa must be in [0, 1], got {kappa}")
    logits = model(x)
    loss = kappa * F.cross_entropy(logits, y)
    if kappa < 1 and eps > 0:
        loss = loss + (1 - kappa) * F.cross_entropy(worst_case_logits(model, x, y, eps), y)
    elif kappa < 1:
        loss = loss + (1 - kappa) * F.cross_entropy(logits, y)
    return loss, logits
