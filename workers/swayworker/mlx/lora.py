"""The runtime LoRA: one model copy whose LoRA delta is switched per view.

sway's own MLX backend fuses the adapter at load time and so keeps two
model copies (base and fine-tuned) and has no scaled or null view. Here
every adapted linear layer is wrapped once, and a view only flips plain
attributes on the wrappers:

* base: the delta is skipped entirely (not multiplied by zero, which would
  turn a NaN adapter's base view into NaN too, unlike PEFT's
  ``disable_adapter``);
* fine-tuned: ``y = W x + scaling * (x a) b``, PEFT's LoRA forward;
* scaled(lam): the same with ``scaling * lam``;
* null(seed): ``a`` and ``b`` swapped for seeded Gaussian noise, the trained
  arrays put back on exit (MLX arrays are immutable, so "restore" is a
  reference assignment, not a copy).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from swayworker.mlx.adapter import UnsupportedAdapter
from swayworker.mlx.convert import LoraArrays


class RuntimeLoRA(nn.Module):  # type: ignore[misc]  # mlx ships no type stubs
    """``base(x) + scaling * factor * (x @ a) @ b``, or just ``base(x)`` when disabled."""

    def __init__(self, base: Any, a: Any, b: Any, scaling: float) -> None:
        super().__init__()
        self.base = base
        self.a = a
        self.b = b
        self.scaling = scaling
        self.factor = 1.0
        self.enabled = True

    def __call__(self, x: Any) -> Any:
        y = self.base(x)
        if not self.enabled:
            return y
        delta = (x.astype(self.a.dtype) @ self.a) @ self.b
        return y + (delta * (self.scaling * self.factor)).astype(y.dtype)


class LoraLayers:
    """Every runtime LoRA layer of one model, switched together for a view."""

    def __init__(self, layers: list[tuple[str, RuntimeLoRA]]) -> None:
        self._layers = layers

    def __len__(self) -> int:
        return len(self._layers)

    @contextmanager
    def disabled(self) -> Iterator[None]:
        try:
            for _, layer in self._layers:
                layer.enabled = False
            yield
        finally:
            for _, layer in self._layers:
                layer.enabled = True

    @contextmanager
    def scaled(self, lam: float) -> Iterator[None]:
        try:
            for _, layer in self._layers:
                layer.factor = float(lam)
            yield
        finally:
            for _, layer in self._layers:
                layer.factor = 1.0

    @contextmanager
    def noise(self, seed: int, std: float) -> Iterator[None]:
        """Replace every ``a`` and ``b`` with N(0, std²) noise, restored on exit.

        The draws come from MLX's counter-based generator: one key from
        ``seed``, split into one key per array in layer-path order, so a seed
        gives the same noise on every call, device and worker of the same
        MLX version. It is not torch's generator, so the noise (and the null
        view's numbers) differ from the HF worker's for the same seed; only
        their distribution is the same.
        """
        keys = mx.random.split(mx.random.key(int(seed)), 2 * len(self._layers))
        saved = [(layer, layer.a, layer.b) for _, layer in self._layers]
        try:
            for i, (_, layer) in enumerate(self._layers):
                layer.a = _gaussian(layer.a, keys[2 * i], std)
                layer.b = _gaussian(layer.b, keys[2 * i + 1], std)
            yield
        finally:
            for layer, a, b in saved:
                layer.a, layer.b = a, b


def _gaussian(like: Any, key: Any, std: float) -> Any:
    noise = mx.random.normal(like.shape, dtype=mx.float32, key=key) * std
    return noise.astype(like.dtype)


def attach(model: Any, arrays: LoraArrays, scaling: float) -> LoraLayers:
    """Wrap each adapted linear layer of ``model`` in place; return the wrappers."""
    layers: list[tuple[str, RuntimeLoRA]] = []
    for path, (a, b) in sorted(arrays.items()):
        *parents, name = path.split(".")
        parent = model
        for part in parents:
            parent = _child(parent, part, path)
        base = _child(parent, name, path)
        _check_linear(path, base, a, b)
        dtype = _float_dtype(base)
        layer = RuntimeLoRA(base, a.astype(dtype), b.astype(dtype), scaling)
        if isinstance(parent, list):
            parent[int(name)] = layer
        else:
            setattr(parent, name, layer)
        layers.append((path, layer))
    return LoraLayers(layers)


def _child(node: Any, part: str, path: str) -> Any:
    """``node.part`` (or ``node[part]`` in a layer list), refused when absent."""
    try:
        child = node[int(part)] if isinstance(node, list) else getattr(node, part, None)
    except (IndexError, ValueError):
        child = None
    if child is None:
        raise UnsupportedAdapter(
            f"the adapter targets {path!r}, which this mlx-lm model does not have "
            "(its module names differ from the transformers model the adapter was trained on)"
        )
    return child


def _check_linear(path: str, module: Any, a: Any, b: Any) -> None:
    """The target must be a (possibly MLX-quantized) linear layer of matching shape."""
    if isinstance(module, nn.QuantizedLinear):
        in_features = module.weight.shape[1] * 32 // module.bits
    elif isinstance(module, nn.Linear):
        in_features = module.weight.shape[1]
    else:
        raise UnsupportedAdapter(
            f"the adapter targets {path!r}, a {type(module).__name__}; the MLX worker "
            "converts LoRA on linear layers only"
        )
    out_features = module.weight.shape[0]
    if a.shape[0] != in_features or b.shape[1] != out_features:
        raise UnsupportedAdapter(
            f"{path}: LoRA maps {a.shape[0]} -> {b.shape[1]} features but the layer maps "
            f"{in_features} -> {out_features}: the adapter belongs to another model"
        )


def _float_dtype(module: Any) -> Any:
    """The layer's compute dtype (a quantized layer's is that of its scales)."""
    if isinstance(module, nn.QuantizedLinear):
        return module.scales.dtype
    return module.weight.dtype
