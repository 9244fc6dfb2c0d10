"""Exact verification of a small ReLU network: a mixed-integer linear program (Tjeng et al. 2019), solved by HiGHS.

Fix the input to one ℓ∞ ball B(x0, ε) ∩ [0, 1]^d. A ReLU network is then piecewise linear, and the only
non-linearity is which side of 0 each pre-activation ẑ falls on. Interval bounds l ≤ ẑ ≤ u (from `ibp`)
settle most units for good: l ≥ 0 means the unit is the identity on the whole ball, u ≤ 0 means it is 0.
Each remaining ("unstable") unit gets one binary variable δ that says which side it is on, and four linear
inequalities whose big-M constants are l and u:

    a ≥ 0,   a ≥ ẑ,   a ≤ u·δ,   a ≤ ẑ − l·(1 − δ),   δ ∈ {0, 1}

(δ = 1 forces a = ẑ ≥ 0, δ = 0 forces a = 0 ≥ ẑ). With every layer written as equalities, minimising a
margin z_y − z_j over this program gives the exact minimum over the ball: the verifier is *complete*, it
either proves robustness or returns an adversarial example, unlike IBP which may answer "don't know".
The price is branch and bound over the binaries: exponential in the number of unstable ReLUs in the worst
case, which is why it is used on small networks and small ε, and why tight bounds (fewer unstable units,
smaller big-M constants) matter so much.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import sys
import time
import warnings

import numpy as np
import torch
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, OptimizeResult, milp
from torch import nn

from ..attacks.core import check_number, eval_mode
from ..images import check_batch, check_images
from ..progress import bar as progress_bar
from . import ibp

AffineMap = tuple[torch.Tensor, torch.Tensor]  # (W out×in, b out), float64

# HiGHS stops by default once its bound is within 1e-4 (relative) of its best point, which would leave
# min_margin that far above the true minimum; the programs here are small enough to close the gap.
MIP_REL_GAP = 1e-9

# HiGHS's sub-MIP heuristics (RENS, RINS) took about half of each solve on a 784-40-40-10 MLP and found
# nothing that branching did not find as fast; they are options scipy does not list but passes on.
SUB_MIP_OFF = {"mip_heuristic_run_rens": False, "mip_heuristic_run_rins": False}


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: comparing tensors field by field has no single truth value
class Verification:
    """The verifier's answer for one image.

    robust: True (proved), False (an adversarial example exists: `adversarial`, in x0's dtype and device),
      None (the time limit came before either).
    min_margin: the smallest z_y − z_j found over the ball; exact when status is "robust" (every class solved
      to optimality or ruled out by its interval bound); when not robust, the most negative margin found.
    unstable: how many ReLUs straddle 0 on the ball, i.e. how many binary variables the program has.
    status: "robust", "robust (min_margin is an upper bound)", "not robust", "not robust (margin within
      rounding)", "time limit" or "misclassified" (then clean_correct is False and adversarial is x0).
    """

    robust: bool | None
    adversarial: torch.Tensor | None
    min_margin: float
    unstable: int
    seconds: float
    status: str
    clean_correct: bool


@dataclasses.dataclass(frozen=True)
class _Program:
    """The constraints of the MILP, shared by every class j (only the objective changes)."""

    constraints: list[LinearConstraint]
    bounds: Bounds
    integrality: np.ndarray
    inputs: int  # the first `inputs` variables are the pixels
    hidden: slice  # the variables the last affine map reads (the last ReLU layer, or the pixels)
    size: int


@dataclasses.dataclass(frozen=True)
class _Solve:
    value: float | None  # the best margin found (None when the solver found no point)
    lower: float  # a proven lower bound on the minimum margin (−inf when none)
    x: np.ndarray | None  # the pixels of the best point
    exact: bool


# ----------------------------------------------------------------------------- the network as affine maps
def affine_form(model: nn.Module, input_shape) -> list[AffineMap]:
    """The model as dense affine maps [(W1, b1), …, (WL, bL)] in float64, with a ReLU between consecutive maps.

    The network must be piecewise linear, an nn.Sequential of the layers `ibp.layers_of` accepts (Linear,
    Conv2d, ReLU, Flatten, Normalize), and must end in an affine layer (the logits, no ReLU after them).
    Every run of non-ReLU layers between two ReLUs is one affine map f; it is measured rather than derived,
    b = f(0) and column i of W = f(e_i) − b, so convolutions, padding, strides, Normalize and Flatten need
    no rule of their own. input_shape is one image's C×H×W.
    """
    shape = _check_shape(input_shape)
    layers = _layers(model)
    if isinstance(layers[-1], nn.ReLU):
        raise ValueError("model must end in an affine layer (the logits); its last layer is a ReLU")
    maps = []
    for segment in _between_relus(layers):
        weight, bias, shape = _probe(segment, shape)
        maps.append((weight, bias))
    if len(shape) != 1:
        raise ValueError(f"model must output one vector of logits per image, got an output of shape {shape} per image")
    return maps


def _check_shape(input_shape) -> tuple[int, int, int]:
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list, torch.Size)) else None
    if shape is None or len(shape) != 3 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"input_shape must be one image's shape C×H×W (three positive ints), got {input_shape!r}")
    return shape


def _layers(model: nn.Module) -> list[nn.Module]:
    try:
        layers = ibp.layers_of(model)
    except ValueError as err:
        raise ValueError(f"model cannot be written as a MILP: {err}") from err
    if not layers:
        raise ValueError("model has no layers")
    return layers


def _between_relus(layers: list[nn.Module]) -> list[list[nn.Module]]:
    """The runs of layers separated by ReLUs (an empty run, e.g. ReLU after ReLU, is the identity)."""
    segments = [[]]
    for layer in layers:
        if isinstance(layer, nn.ReLU):
            segments.append([])
        else:
            segments[-1].append(layer)
    return segments


def _probe(segment: list[nn.Module], shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """(W, b, output shape) of an affine run of layers, from its values at 0 and at the unit vectors."""
    net = copy.deepcopy(nn.Sequential(*segment)).to("cpu", torch.float64)  # a copy: the caller's model stays as it is
    n = math.prod(shape)
    basis = torch.cat([torch.zeros(1, n, dtype=torch.float64), torch.eye(n, dtype=torch.float64)]).view(n + 1, *shape)
    with torch.no_grad():
        out = net(basis)
    out_shape = tuple(out.shape[1:])
    out = out.reshape(n + 1, -1)
    bias = out[0].clone()
    return (out[1:] - bias).T.contiguous(), bias, out_shape


def _forward(maps: list[AffineMap], v: torch.Tensor) -> torch.Tensor:
    """The logits of the dense form on flat inputs v (rows are examples)."""
    for weight, bias in maps[:-1]:
        v = (v @ weight.T + bias).clamp(min=0)
    weight, bias = maps[-1]
    return v @ weight.T + bias


# ----------------------------------------------------------------------------- interval bounds
def _flat_box(x0: torch.Tensor, eps: float) -> ibp.Box:
    """The attacker's box around x0 in float64 on the CPU, one row of d pixels."""
    lower, upper = ibp.input_box(x0.detach().to("cpu", torch.float64), eps)
    return lower.flatten(1), upper.flatten(1)


def _hidden_bounds(maps: list[AffineMap], lower: torch.Tensor, upper: torch.Tensor) -> tuple[list[ibp.Box], ibp.Box]:
    """The interval of every hidden pre-activation, and the box of what the last affine map reads."""
    boxes = []
    for weight, bias in maps[:-1]:
        lower, upper = ibp.interval_linear(weight, bias, lower, upper)
        boxes.append((lower[0], upper[0]))
        lower, upper = lower.clamp(min=0), upper.clamp(min=0)
    return boxes, (lower, upper)


def _unstable(box: ibp.Box) -> torch.Tensor:
    lower, upper = box
    return (lower < 0) & (upper > 0)


def _count_unstable(boxes: list[ibp.Box]) -> int:
    return sum(int(_unstable(box).sum()) for box in boxes)


def _margin_bounds(last: AffineMap, y: int, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """Interval lower bounds of z_y − z_j, for every j, as one affine function of the last hidden layer."""
    weight, bias = last
    return ibp.interval_linear(weight[y] - weight, bias[y] - bias, lower, upper)[0][0]


def unstable_relus(model: nn.Module, x0: torch.Tensor, eps: float) -> int:
    """How many ReLUs of `model` have an interval that straddles 0 on B(x0, ε) ∩ [0, 1]^d (the MILP's binaries)."""
    _check_image(x0)
    eps = _check_eps(eps)
    maps = affine_form(model, x0.shape[1:])
    return _count_unstable(_hidden_bounds(maps, *_flat_box(x0, eps))[0])


# ----------------------------------------------------------------------------- the program
def _select(rows: np.ndarray, n: int, values: np.ndarray | float = 1.0) -> sparse.coo_array:
    """A len(rows)×n matrix with `values` at (i, rows[i]): picks units out of a layer."""
    values = np.broadcast_to(np.asarray(values, dtype=np.float64), rows.shape)
    return sparse.coo_array((values, (np.arange(len(rows)), rows)), shape=(len(rows), n))


def _place(size: int, *pieces: tuple[int, sparse.coo_array | np.ndarray]) -> sparse.coo_array:
    """Blocks with the same number of rows, each starting at its column offset, in a matrix `size` columns wide."""
    rows, cols, vals = [], [], []
    for offset, block in pieces:
        block = sparse.coo_array(block)
        rows.append(block.row)
        cols.append(block.col + offset)
        vals.append(block.data)
        height = block.shape[0]
    return sparse.coo_array((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(height, size))


def _encode(maps: list[AffineMap], boxes: list[ibp.Box], x_box: ibp.Box) -> _Program:
    """Tjeng et al.'s encoding: pixels, then per hidden layer its pre-activations ẑ, its outputs a and one
    binary δ per unstable unit. Stable units need no binary: a = ẑ (active) or a = 0 (inactive)."""
    inputs = x_box[0].shape[1]
    offsets, size = [], inputs
    for box in boxes:
        n, m = box[0].numel(), int(_unstable(box).sum())
        offsets.append((size, size + n, size + 2 * n))  # ẑ, a, δ
        size += 2 * n + m

    lower = [x_box[0][0].numpy()]
    upper = [x_box[1][0].numpy()]
    integrality = [np.zeros(inputs)]
    matrices, row_lower, row_upper = [], [], []

    def add(matrix, lo, hi):
        matrices.append(matrix)
        row_lower.append(np.broadcast_to(np.asarray(lo, dtype=np.float64), matrix.shape[0]))
        row_upper.append(np.broadcast_to(np.asarray(hi, dtype=np.float64), matrix.shape[0]))

    reads = 0  # column of the first variable the next affine map reads
    for (weight, bias), (l, u), (z_at, a_at, d_at) in zip(maps, boxes, offsets):
        n = weight.shape[0]
        l, u = l.numpy(), u.numpy()
        add(_place(size, (z_at, sparse.eye_array(n)), (reads, -weight.numpy())), bias.numpy(), bias.numpy())
        active = np.flatnonzero(l >= 0)
        if len(active):
            add(_place(size, (a_at, _select(active, n)), (z_at, _select(active, n, -1.0))), 0.0, 0.0)
        unstable = np.flatnonzero((l < 0) & (u > 0))
        m = len(unstable)
        if m:
            lu, uu, picks = l[unstable], u[unstable], np.arange(m)
            a, z = _select(unstable, n), _select(unstable, n, -1.0)
            add(_place(size, (a_at, a), (z_at, z)), 0.0, np.inf)  # a ≥ ẑ
            add(_place(size, (a_at, a), (d_at, _select(picks, m, -uu))), -np.inf, 0.0)  # a ≤ u·δ
            add(_place(size, (a_at, a), (z_at, z), (d_at, _select(picks, m, -lu))), -np.inf, -lu)  # a ≤ ẑ − l(1 − δ)
        # Bounds on ẑ are implied but help the solver; a ∈ [relu(l), relu(u)] also pins inactive units to 0.
        lower += [l, np.maximum(l, 0), np.zeros(m)]
        upper += [u, np.maximum(u, 0), np.ones(m)]
        integrality += [np.zeros(2 * n), np.ones(m)]
        reads = a_at

    hidden_width = maps[-1][0].shape[1]
    # A network without ReLUs (a linear model) has no constraints, only the pixel box.
    constraints = [LinearConstraint(sparse.vstack(matrices, format="csc"), np.concatenate(row_lower),
                                    np.concatenate(row_upper))] if matrices else []
    return _Program(
        constraints=constraints,
        bounds=Bounds(np.concatenate(lower), np.concatenate(upper)),
        integrality=np.concatenate(integrality),
        inputs=inputs,
        hidden=slice(reads, reads + hidden_width),
        size=size,
    )


@contextlib.contextmanager
def _c_stdout_silenced():
    """File descriptor 1 pointed at the null device: some HiGHS builds print debug lines from C
    (e.g. `HighsMipSolverData::transformNewIntegerFeasibleSolution`) that no option turns off, and
    they would land in a notebook's stored output. Python's own output is flushed first and restored after."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1 to redirect (embedded interpreters): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _solve(program: _Program, weight: np.ndarray, constant: float, time_limit: float) -> _Solve:
    """Minimise weight·h + constant over the program, within `time_limit` seconds."""
    c = np.zeros(program.size)
    c[program.hidden] = weight
    # No presolve: on the dense first layer it costs HiGHS more than it saves (≈ 2× slower with it on a
    # 784-40-40-10 MLP), and the program's variables are already tightly bounded.
    options = {"time_limit": time_limit, "mip_rel_gap": MIP_REL_GAP, "presolve": False}
    run = lambda opts: milp(c, integrality=program.integrality, bounds=program.bounds,
                            constraints=program.constraints, options=opts)
    try:
        with _c_stdout_silenced(), warnings.catch_warnings():  # scipy warns that it passes options it does not know to HiGHS verbatim
            warnings.filterwarnings("ignore", "Unrecognized options", RuntimeWarning)
            result = run({**options, **SUB_MIP_OFF})
    except AttributeError:  # a HiGHS that lacks these options: solve with its defaults
        result = run(options)
    return _interpret(result, constant, program.inputs)


def _interpret(result: OptimizeResult, constant: float, inputs: int) -> _Solve:
    """What a `scipy.optimize.milp` result proves about the margin, for each of its statuses."""
    x = None if result.x is None else np.asarray(result.x[:inputs])
    value = None if result.fun is None or x is None else float(result.fun) + constant
    if result.status == 0:
        if value is None:
            raise RuntimeError(f"HiGHS reported an optimum without a solution ({result.message})")
        return _Solve(value, value, x, True)
    if result.status == 1:  # time limit: perhaps a point, perhaps a bound, not both tight
        bound = result.get("mip_dual_bound")
        lower = float(bound) + constant if bound is not None and np.isfinite(bound) else -math.inf
        return _Solve(value, lower, x, False)
    if result.status == 2:
        raise RuntimeError("the MILP is infeasible, which cannot happen (x0 itself satisfies it): the interval "
                           f"bounds used as big-M constants must be wrong ({result.message})")
    if result.status == 3:
        raise RuntimeError(f"the MILP is unbounded, which cannot happen (every variable is bounded) ({result.message})")
    raise RuntimeError(f"HiGHS failed (status {result.status}): {result.message}")


# ----------------------------------------------------------------------------- verification
def verify(model: nn.Module, x0: torch.Tensor, y: int, eps: float, *, time_limit: float = 60.0,
           exact_margin: bool = True) -> Verification:
    """Decide exactly whether every x in B∞(x0, ε) ∩ [0, 1]^d is classified y, for ONE image x0 (1×C×H×W).

    For each other class j, the most dangerous first by IBP's bound, the MILP minimises z_y − z_j; a
    negative minimum is an adversarial example (checked on the real model), non-negative minima for every
    j are a proof. Classes whose interval bound already exceeds the smallest margin found are skipped: they
    can neither break robustness nor hold the minimum. With `exact_margin=False` every class whose interval
    bound is ≥ 0 is skipped too: the decision is the same and often much faster (no program at all when IBP
    certifies x0), but min_margin of a robust x0 is then only an upper bound (status says so).
    `time_limit` is for the whole call, in seconds (HiGHS may overrun it by a fraction of a second).
    """
    start = time.perf_counter()
    _check_image(x0)
    eps = _check_eps(eps)
    time_limit = check_number("time_limit", time_limit, positive=True)
    maps = affine_form(model, x0.shape[1:])
    y = _check_label(y, maps[-1][0].shape[0])
    return _verify(model, maps, x0, y, eps, time_limit, bool(exact_margin), start)


def verify_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, time_limit: float = 60.0,
                 exact_margin: bool = True, progress: bool = True) -> list[Verification]:
    """`verify` for every image of x (labels y), each with its own `time_limit` seconds."""
    check_images(x)
    eps = _check_eps(eps)
    time_limit = check_number("time_limit", time_limit, positive=True)
    maps = affine_form(model, x.shape[1:])  # once for the batch: the network is the same for every image
    check_batch(x, y, maps[-1][0].shape[0])
    results = []
    bar = progress_bar(range(len(y)), desc=f"MILP ε={eps:g}", unit="digits", disable=not progress)
    for i in bar:
        results.append(_verify(model, maps, x[i:i + 1], int(y[i]), eps, time_limit, bool(exact_margin),
                               time.perf_counter()))
        bar.set_postfix(robust=sum(r.robust is True for r in results), broken=sum(r.robust is False for r in results),
                        open=sum(r.robust is None for r in results))
    return results


def _verify(model: nn.Module, maps: list[AffineMap], x0: torch.Tensor, y: int, eps: float, time_limit: float,
            exact_margin: bool, start: float) -> Verification:
    deadline = start + time_limit
    x_box = _flat_box(x0, eps)
    boxes, h_box = _hidden_bounds(maps, *x_box)
    unstable = _count_unstable(boxes)
    done = lambda robust, adversarial, margin, status, clean=True: Verification(
        robust, adversarial, float(margin), unstable, time.perf_counter() - start, status, clean)

    logits = _model_logits(model, x0)
    if int(logits.argmax()) != y:
        return done(False, x0.detach().clone(), _margin(logits, y), "misclassified", clean=False)

    # The margin at x0 is a margin found; a class whose interval bound is not below it cannot lower it.
    best = _margin(_forward(maps, x0.detach().to("cpu", torch.float64).flatten(1))[0], y)
    bounds = _margin_bounds(maps[-1], y, *h_box)
    weight, bias = maps[-1]
    program, exact = None, True
    for j in sorted((j for j in range(len(bounds)) if j != y), key=lambda j: float(bounds[j])):
        needed = float(bounds[j]) < 0  # to decide robustness; the others only to make min_margin exact
        if (best >= 0 and float(bounds[j]) >= best) or not (needed or exact_margin):
            # Sorted by bound: no later class is needed either, and none can hold a smaller margin than
            # this one's bound allows. (best < 0 only if float64 rounds x0 itself across the boundary that
            # the model's float32 did not cross: then the solver must find that point.)
            exact = exact and float(bounds[j]) >= best
            break
        program = program or _encode(maps, boxes, x_box)
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            if needed:
                return done(None, None, best, "time limit")
            exact = False
            break
        out = _solve(program, (weight[y] - weight[j]).numpy(), float(bias[y] - bias[j]), remaining)
        if out.value is not None:
            best = min(best, out.value)
            if out.value < 0:
                return _counterexample(model, maps, x0, y, eps, out, unstable, start)
        if max(out.lower, float(bounds[j])) < 0:
            return done(None, None, best, "time limit")
        exact = exact and out.exact
    return done(True, None, best, "robust" if exact else "robust (min_margin is an upper bound)")


def _counterexample(model: nn.Module, maps: list[AffineMap], x0: torch.Tensor, y: int, eps: float, out: _Solve,
                    unstable: int, start: float) -> Verification:
    """The solver's point as an image, made real: clipped to the ball in x0's dtype and run through the model."""
    lower, upper = ibp.input_box(x0.detach(), eps)
    x_adv = torch.as_tensor(out.x, dtype=x0.dtype, device=x0.device).view_as(x0)
    x_adv = torch.minimum(torch.maximum(x_adv, lower), upper)  # the solver honours bounds only to its tolerance
    fooled = int(_model_logits(model, x_adv).argmax()) != y
    # A margin of −1e-9 in float64 may round the other way in the float32 model: say so rather than hide it.
    status = "not robust" if fooled else "not robust (margin within rounding)"
    # The solver minimised z_y − z_j for one j; at its point another class may beat y by even more.
    margin = min(out.value, _margin(_forward(maps, x_adv.detach().to("cpu", torch.float64).flatten(1))[0], y))
    return Verification(False, x_adv, margin, unstable, time.perf_counter() - start, status, True)


def _model_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with eval_mode(model), torch.no_grad():
        return model(x)[0].detach().to("cpu", torch.float64)


def _margin(logits: torch.Tensor, y: int) -> float:
    """min_{j≠y} z_y − z_j of one vector of logits."""
    others = torch.cat([logits[:y], logits[y + 1:]])
    return float(logits[y] - others.max())


# ----------------------------------------------------------------------------- input checks
def _check_image(x0) -> None:
    check_images(x0, "x0")
    if x0.shape[0] != 1:
        raise ValueError(f"x0 must be ONE image shaped 1×C×H×W, got a batch of {x0.shape[0]} (use verify_batch)")


def _check_eps(eps) -> float:
    eps = check_number("eps", eps)
    if eps > 1:
        raise ValueError(f"eps={eps} is larger than the whole [0, 1] pixel range; ℓ∞ budgets are in pixel units")
    return eps


def _check_label(y, classes: int) -> int:
    if isinstance(y, torch.Tensor) and y.numel() == 1 and not y.is_floating_point() and y.dtype != torch.bool:
        y = y.item()
    if isinstance(y, np.integer):
        y = int(y)
    if isinstance(y, bool) or not isinstance(y, int):
        raise ValueError(f"y must be an int class label, got {y!r}")
    if not 0 <= y < classes:
        raise ValueError(f"y must be a class label in 0 … {classes - 1}, got {y}")
    return y
