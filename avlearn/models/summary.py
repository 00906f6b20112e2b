"""Per-layer summary of a model: output size, receptive field, parameters and multiply-accumulates (MACs).

Usage::

    avlearn summary c3d --input 3x16x112x112
    avlearn summary alexnet --input 3x224x224          # torchvision classification models work too
    avlearn summary two_stream_tiny --input video=3x4x32x32 --input flow=2x3x32x32

Conventions (see docs/models.md):

* **MACs, not FLOPs.** Counted by ``torch.utils.flop_counter.FlopCounterMode`` over the real forward pass
  (on the ``meta`` device, so nothing is computed), halved: one multiply-accumulate = 2 FLOPs. Only
  convolutions and matrix products count (conv, linear, matmul/bmm, attention); biases, normalization,
  activations and pooling do not. Attention's ``QK^T`` and ``AV`` products are counted.
* **Rows** are the leaf modules in the order they first run (activations, dropout and flatten hidden unless
  ``--all``) plus any module doing its own matrix products (e.g. an attention module's ``QK^T``). A module run
  several times (weights shared over time) is one row with its MACs summed; its output is that of the last call.
* **Receptive field** of a row: the extent, along each input axis (``T x H x W``), of the input region that can
  change one output unit, the unit at the center of every axis of the output (batch size 1, so frames folded
  into the batch count as an axis). The channel axis (dim 1) is summed over, so for vectors ``(B, F)`` and
  token sequences ``(B, N, D)`` it is the extent of the whole output. Extents are clipped to the input:
  a global pool or a fully connected layer sees the whole clip.

  It is computed analytically (from kernel, stride, padding and dilation) wherever the output is reached from
  the input through a chain of convolutions, poolings (adaptive poolings included), pointwise modules, flatten
  and linear layers. Where the data flow leaves such a chain (a reshape, a residual sum, attention) it is
  measured instead: the output unit is back-propagated to the input through a float64 copy of the model whose
  weights are made positive and whose max-poolings are replaced by average poolings of the same geometry, so
  no path is cut by a ReLU or a max; the RF is the bounding box of the nonzero input gradient. This is exact
  for conv/pool/ReLU networks and a lower bound where a normalization can zero a path. It needs a real forward
  and backward per row, so it is skipped for models above ``--rf-max-gmacs`` (shown ``-``).
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

InputSize = tuple[int, ...] | dict[str, tuple[int, ...]]

# Modules hidden from the table unless show_all: they neither compute MACs nor change the shape.
_QUIET = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Softmax, nn.Dropout,
          nn.Dropout2d, nn.Dropout3d, nn.Identity, nn.Flatten, nn.LeakyReLU, nn.Hardsigmoid)  # fmt: skip
# Modules acting element by element (eval mode): the receptive field passes through unchanged.
_POINTWISE = (
    nn.ReLU,
    nn.ReLU6,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Dropout,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.Identity,
    nn.LeakyReLU,
    nn.Hardsigmoid,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
)
_CONV_POOL = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d,
              nn.AvgPool3d)  # fmt: skip
_MAXPOOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_ADAPTIVE = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
             nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)  # fmt: skip


@dataclass
class LayerRow:
    """One row of the summary."""

    name: str
    kind: str
    output_size: tuple[int, ...] | None  # without the batch dimension
    params: int
    macs: int
    rf: tuple[int, ...] | None = None  # one extent per input axis
    rf_method: str = ""  # "analytic" or "gradient"


@dataclass
class ModelSummary:
    """A model's rows and totals; ``str()`` gives the text table, :meth:`to_markdown` a markdown one."""

    model_name: str
    input_size: InputSize
    axes: tuple[str, ...]
    rows: list[LayerRow] = field(default_factory=list)
    total_params: int = 0
    total_macs: int = 0
    rf_note: str = ""

    @property
    def total_gmacs(self) -> float:
        return self.total_macs / 1e9

    def row(self, name: str) -> LayerRow:
        """The row whose name is ``name`` or ends with ``"." + name``."""
        for r in self.rows:
            if r.name == name or r.name.endswith("." + name):
                return r
        raise KeyError(f"no row {name!r}; rows: {[r.name for r in self.rows]}")

    def _cells(self) -> tuple[list[str], list[list[str]]]:
        header = ["layer", "type", "output", f"RF ({' x '.join(self.axes)})" if self.axes else "RF", "params",
                  "GMACs"]  # fmt: skip
        body = []
        for r in self.rows:
            rf = "-" if r.rf is None else "x".join(map(str, r.rf)) + ("*" if r.rf_method == "gradient" else "")
            out = "-" if r.output_size is None else "x".join(map(str, r.output_size))
            body.append([r.name, r.kind, out, rf, f"{r.params:,}", f"{r.macs / 1e9:.2f}"])
        body.append(["total", "", "", "", f"{self.total_params:,}", f"{self.total_gmacs:.2f}"])
        return header, body

    def __str__(self) -> str:
        header, body = self._cells()
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
        fmt = lambda row: "  ".join(c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        lines = [f"{self.model_name} at input {format_size(self.input_size)}", fmt(header),
                 "  ".join("-" * w for w in widths)]  # fmt: skip
        lines += [fmt(row) for row in body]
        if self.rf_note:
            lines.append(self.rf_note)
        return "\n".join(lines)

    def to_markdown(self) -> str:
        header, body = self._cells()
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])


def parse_size(text: str) -> tuple[int, ...]:
    """``"3x16x112x112"`` -> ``(3, 16, 112, 112)``.

    Raises:
        ValueError: if ``text`` is not positive integers joined by ``x``.
    """
    try:
        size = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        size = ()
    if not size or min(size) <= 0:
        raise ValueError(f"input size {text!r} is not like CxTxHxW (e.g. 3x16x112x112) or CxHxW (3x224x224)")
    return size


def format_size(size: InputSize) -> str:
    if isinstance(size, dict):
        return ", ".join(f"{k}={'x'.join(map(str, v))}" for k, v in size.items())
    return "x".join(map(str, size))


def _first_tensor(out) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        for item in out:
            t = _first_tensor(item)
            if t is not None:
                return t
    if isinstance(out, dict):
        return _first_tensor(list(out.values()))
    return None


def _make_input(size: InputSize, batch_size: int, device: str | torch.device, dtype: torch.dtype, positive: bool):
    make = lambda s: (
        (torch.rand if positive else torch.randn)(batch_size, *s, device=device, dtype=dtype)
        + (0.5 if positive else 0.0)
    )
    return {k: make(s) for k, s in size.items()} if isinstance(size, dict) else make(size)


_FLATTENS = {torch.flatten, torch.Tensor.flatten, torch.Tensor.view, torch.Tensor.reshape, torch.reshape}

# --- analytic receptive fields --------------------------------------------------------------------------------
# A state describes, per input axis, which input span unit i of a tensor sees: [start + i*jump, .. + rf - 1]
# ("map"), or for tensors without spatial axes (after flatten/linear) a fixed span per axis ("box").


def _ndim(module: nn.Module) -> int:
    """Spatial dimensions of a conv/pool module (subclasses such as torchvision's Conv3DSimple included)."""
    kinds = {
        1: (nn.Conv1d, nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d),
        2: (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d),
        3: (nn.Conv3d, nn.MaxPool3d, nn.AvgPool3d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d),
    }
    for nd, types in kinds.items():
        if isinstance(module, types):
            return nd
    raise TypeError(type(module).__name__)


def _geometry(module: nn.Module, nd: int) -> list[tuple[int, int, int, int]]:
    tup = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v,) * nd
    k, s = tup(module.kernel_size), tup(module.stride if module.stride is not None else module.kernel_size)
    d = tup(getattr(module, "dilation", 1))
    p = module.padding
    if isinstance(p, str):  # "same" / "valid"
        p = tuple(di * (ki - 1) // 2 for ki, di in zip(k, d)) if p == "same" else (0,) * nd
    return list(zip(k, s, tup(p), d))


def _transition(module: nn.Module, state, in_shape: tuple[int, ...]):
    """The state of ``module``'s output given its input's, or None when the rule does not apply."""
    kind, spans = state
    if isinstance(module, nn.Flatten) and kind == "map" and len(in_shape) != 2 + len(spans):
        return None
    if isinstance(module, _POINTWISE):
        return state
    if isinstance(module, nn.Flatten) or (isinstance(module, nn.Linear) and len(in_shape) == 2):
        if kind == "box":
            return state
        if isinstance(module, nn.Flatten) and module.start_dim != 1:
            return None
        sizes = in_shape[2:]
        return "box", [(st, st + (n - 1) * j + rf - 1) for (st, j, rf), n in zip(spans, sizes)]
    if kind != "map" or len(in_shape) != 2 + len(spans):
        return None
    if isinstance(module, _CONV_POOL):
        nd = _ndim(module)
        if nd != len(spans) or getattr(module, "return_indices", False):
            return None
        return "map", [(st - p * j, j * s, rf + dl * (k - 1) * j) for (st, j, rf), (k, s, p, dl) in
                       zip(spans, _geometry(module, nd))]  # fmt: skip
    if isinstance(module, _ADAPTIVE):
        nd = _ndim(module)
        out = module.output_size
        out = tuple(out) if isinstance(out, (tuple, list)) else (out,) * nd
        if nd != len(spans):
            return None
        new = []
        for (st, j, rf), n, o in zip(spans, in_shape[2:], out):
            if o is None or o == n:
                new.append((st, j, rf))
            elif n % o == 0:  # an ordinary pooling with kernel = stride = n / o
                k = n // o
                new.append((st, j * k, rf + (k - 1) * j))
            else:
                return None
        return "map", new
    return None


def _extent(state, out_shape: tuple[int, ...], in_sizes: tuple[int, ...]) -> tuple[int, ...]:
    kind, spans = state
    result = []
    for i, n_in in enumerate(in_sizes):
        if kind == "box":
            lo, hi = spans[i]
        else:
            st, j, rf = spans[i]
            lo = st + (out_shape[2 + i] // 2) * j
            hi = lo + rf - 1
        result.append(max(0, min(hi, n_in - 1) - max(lo, 0) + 1))
    return tuple(result)


# --- the passes -------------------------------------------------------------------------------------------------


def _shape_pass(model: nn.Module, size: InputSize, device: str):
    """Run the model once under FlopCounterMode; returns (order, outputs, flops, analytic states)."""
    order: list[str] = []
    outputs: dict[str, tuple[int, ...] | None] = {}
    states: dict[str, object] = {}
    tracked: dict[int, tuple[object, int, torch.Tensor]] = {}  # id(tensor) -> (state, version, tensor)
    pending: dict[str, object] = {}
    x = _make_input(size, 1, device, torch.float32, positive=False)
    if isinstance(x, torch.Tensor) and x.dim() >= 3:
        tracked[id(x)] = (("map", [(0, 1, 1)] * (x.dim() - 2)), x._version, x)
    handles = []

    def pre_hook(name):
        def hook(module, args):
            t = args[0] if args and isinstance(args[0], torch.Tensor) else None
            entry = tracked.get(id(t)) if t is not None else None
            ok = entry is not None and entry[2] is t and entry[1] == t._version
            pending[name] = _transition(module, entry[0], tuple(t.shape)) if ok else None

        return hook

    def post_hook(name):
        def hook(module, args, out):
            if name not in outputs:
                order.append(name)
            t = _first_tensor(out)
            outputs[name] = tuple(t.shape[1:]) if t is not None else None
            state = pending.pop(name, None)
            states[name] = (state, tuple(t.shape)) if state is not None and t is not None else None
            if state is not None and t is not None:
                tracked[id(t)] = (state, t._version, t)

        return hook

    class FlattenTracker(TorchFunctionMode):  # x.flatten(1) / x.view(B, -1) in forward code: like nn.Flatten
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            t = args[0] if args else None
            if func in _FLATTENS and isinstance(t, torch.Tensor) and isinstance(out, torch.Tensor):
                entry = tracked.get(id(t))
                if (
                    entry is not None
                    and entry[2] is t
                    and out.dim() == 2
                    and t.dim() >= 3
                    and out.shape[0] == t.shape[0]
                ):
                    state = _transition(nn.Flatten(), entry[0], tuple(t.shape))
                    if state is not None:
                        tracked[id(out)] = (state, out._version, out)
            return out

    for name, module in model.named_modules():
        handles.append(module.register_forward_hook(post_hook(name)))
        if not list(module.children()):
            handles.append(module.register_forward_pre_hook(pre_hook(name)))
    try:
        with FlopCounterMode(display=False) as counter, FlattenTracker():
            model(x)
    finally:
        for h in handles:
            h.remove()
    flops = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    return order, outputs, flops, states


def _gradient_rf(model: nn.Module, size: tuple[int, ...], names: list[str]) -> dict[str, tuple[int, ...] | None]:
    """Measure receptive fields by back-propagating one output unit per row (see module docstring)."""
    model = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.abs() + 0.01)
    recorded: dict[str, torch.Tensor] = {}
    wanted = set(names)
    handles = []

    def avg_instead_of_max(module, args, out):
        nd = _ndim(module)
        if isinstance(module, _ADAPTIVE):
            return getattr(F, f"adaptive_avg_pool{nd}d")(args[0], module.output_size)
        if module.dilation not in (1, (1,) * nd) or getattr(module, "return_indices", False):
            return None
        return getattr(F, f"avg_pool{nd}d")(args[0], module.kernel_size, module.stride, module.padding,
                                            ceil_mode=module.ceil_mode, count_include_pad=True)  # fmt: skip

    def record(name):
        def hook(module, args, out):
            t = _first_tensor(out)
            if t is not None and t.requires_grad:
                recorded[name] = t

        return hook

    for name, module in model.named_modules():
        if isinstance(module, _MAXPOOLS):
            handles.append(module.register_forward_hook(avg_instead_of_max))
        if name in wanted:
            handles.append(module.register_forward_hook(record(name)))
    x = _make_input(size, 1, "cpu", torch.float64, positive=True).requires_grad_(True)
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    result: dict[str, tuple[int, ...] | None] = {}
    for name in names:
        t = recorded.get(name)
        if t is None:
            result[name] = None
            continue
        # the center unit along every axis but the channels (dim 1), which are summed over
        index = tuple(slice(None) if i == 1 else n // 2 for i, n in enumerate(t.shape))
        (grad,) = torch.autograd.grad(t[index].sum(), x, retain_graph=True, allow_unused=True)
        if grad is None:
            result[name] = None
            continue
        support = grad[0].abs().sum(0) > 0  # (*S)
        extents = []
        for axis in range(support.dim()):
            other = tuple(a for a in range(support.dim()) if a != axis)
            idx = support.any(dim=other).nonzero() if other else support.nonzero()
            extents.append(int(idx.max() - idx.min() + 1) if len(idx) else 0)
        result[name] = tuple(extents)
    return result


def _meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters and buffers live on the meta device (no data is copied)."""
    memo: dict[int, torch.Tensor] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = torch.empty_like(b, device="meta")
    return copy.deepcopy(model, memo)


def summarize(model: nn.Module, input_size: InputSize, *, name: str | None = None, rf: str = "auto",
              rf_max_gmacs: float = 3.0, show_all: bool = False) -> ModelSummary:  # fmt: skip
    """Summarize ``model`` at ``input_size`` (without batch dimension).

    Args:
        model: any ``nn.Module``; it is copied, not changed.
        input_size: e.g. ``(3, 16, 112, 112)``, or ``{"video": (...), "spec": (...)}`` for dict inputs.
        name: the name to print (defaults to the class name).
        rf: ``"auto"`` (analytic where possible, else measured), ``"analytic"``, ``"gradient"`` or ``"off"``.
        rf_max_gmacs: largest model (in GMACs at ``input_size``) for which receptive fields are measured.
        show_all: also list activations, dropout and flatten.

    Returns:
        The rows and totals.

    Raises:
        ValueError: if ``rf`` is not one of the choices.
    """
    if rf not in ("auto", "analytic", "gradient", "off"):
        raise ValueError(f"rf={rf!r}; choose auto, analytic, gradient or off")
    try:  # meta tensors: shapes and MACs without computing anything
        order, outputs, flops, states = _shape_pass(_meta_copy(model).eval(), input_size, "meta")
    except (NotImplementedError, RuntimeError):
        try:  # an op without a meta kernel, or an input the model refuses: run it for real to find out
            order, outputs, flops, states = _shape_pass(copy.deepcopy(model).eval(), input_size, "cpu")
        except RuntimeError as err:
            raise ValueError(f"{name or type(model).__name__} cannot run on input {format_size(input_size)}: "
                             f"{str(err).splitlines()[0]}") from err  # fmt: skip
    prefix = type(model).__name__
    modules = dict(model.named_modules())
    key = lambda n: f"{prefix}.{n}" if n else prefix
    child = lambda n, c: f"{n}.{c}" if n else c

    def total(n: str) -> int:  # a container that is never called itself (ModuleList/Dict): sum of its children
        if key(n) in flops or not list(modules[n].children()):
            return flops.get(key(n), 0)
        return sum(total(child(n, c)) for c, _ in modules[n].named_children())

    own = {n: total(n) - sum(total(child(n, c)) for c, _ in modules[n].named_children()) for n in order}
    rows = []
    for n in order:
        module = modules[n]
        leaf = not list(module.children())
        if not ((leaf and (show_all or not isinstance(module, _QUIET))) or own[n] > 0):
            continue
        params = sum(p.numel() for p in module.parameters(recurse=leaf))
        rows.append(LayerRow(n or "(model)", type(module).__name__, outputs[n], params, own[n] // 2))
    axes = ()
    note = ""
    if not isinstance(input_size, dict) and len(input_size) >= 2:
        in_sizes = tuple(input_size[1:])
        axes = getattr(model, "input_axes", None) or {3: ("T", "H", "W"), 2: ("H", "W"), 1: ("L",)}[len(in_sizes)]
        if rf in ("auto", "analytic"):
            for r in rows:
                st = states.get("" if r.name == "(model)" else r.name)
                if st is not None:
                    r.rf, r.rf_method = _extent(st[0], st[1], in_sizes), "analytic"
        missing = [r for r in rows if r.rf is None]
        total_gmacs = total("") / 2e9
        if missing and (rf == "gradient" or (rf == "auto" and total_gmacs <= rf_max_gmacs)):
            measured = _gradient_rf(model, tuple(input_size), ["" if r.name == "(model)" else r.name for r in missing])
            for r in missing:
                r.rf = measured.get("" if r.name == "(model)" else r.name)
                r.rf_method = "gradient" if r.rf is not None else ""
        if any(r.rf_method == "gradient" for r in rows):
            note = "* receptive field measured by back-propagation (the data flow is not a plain conv/pool chain)"
        elif any(r.rf is None for r in rows) and rf != "off":
            note = f"- receptive field not computed (not a conv/pool chain and above {rf_max_gmacs} GMACs)"
    return ModelSummary(name or prefix, input_size, tuple(axes), rows, sum(p.numel() for p in model.parameters()),
                        total("") // 2, note)  # fmt: skip


def count_macs(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Runs ``fn()`` under the same counter as :func:`summarize`; returns its result and the
    multiply-accumulates of every matmul and convolution it ran (FFTs are not counted)."""
    with FlopCounterMode(display=False) as counter:
        out = fn()
    return out, counter.get_total_flops() // 2


def build_model(name: str) -> nn.Module:
    """A model from the avlearn registry or, failing that, a torchvision classification model (no weights).

    Raises:
        ValueError: if neither knows ``name``.
    """
    import torchvision

    from avlearn.models import create_model, list_models

    if name in list_models():
        return create_model(name)
    if name in torchvision.models.list_models():
        return torchvision.models.get_model(name, weights=None)
    raise ValueError(f"unknown model {name!r}: not in avlearn.models.list_models() nor in torchvision's models")


def default_input_size(name: str) -> InputSize:
    from avlearn.models import list_models
    from avlearn.models.registry import get_model_info

    return get_model_info(name).input_size if name in list_models() else (3, 224, 224)


# --- command line ------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a registered avlearn model (see --list) or a torchvision classification model")
    parser.add_argument(
        "--input",
        action="append",
        default=None,
        metavar="CxTxHxW",
        help="input size without batch, CxTxHxW or CxHxW (default: the model's); for models taking "
        "a dict give key=size once per key, e.g. --input video=3x8x32x32 --input spec=1x64x32",
    )
    parser.add_argument(
        "--rf",
        default="auto",
        choices=["auto", "analytic", "gradient", "off"],
        help="how to get receptive fields (default: analytic where possible, else measured)",
    )
    parser.add_argument("--rf-max-gmacs", type=float, default=3.0, help="largest model whose RF is measured")
    parser.add_argument("--all", action="store_true", help="also list activations, dropout and flatten")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")


def run(args: argparse.Namespace) -> int:
    try:
        model = build_model(args.model)
        if args.input is None:
            size: InputSize = default_input_size(args.model)
        elif all("=" in item for item in args.input):
            size = {k: parse_size(v) for k, v in (item.split("=", 1) for item in args.input)}
        elif len(args.input) == 1:
            size = parse_size(args.input[0])
        else:
            raise ValueError("give --input once (CxTxHxW), or as key=size for each input of a dict-input model")
        summary = summarize(model, size, name=args.model, rf=args.rf, rf_max_gmacs=args.rf_max_gmacs,
                            show_all=args.all)  # fmt: skip
    except ValueError as err:
        print(f"avlearn summary: error: {err}")
        return 2
    print(summary.to_markdown() if args.markdown else summary)
    return 0
