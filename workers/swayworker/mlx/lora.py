"""The runtime LoRA: one model copy whose LoRA delta is switched per view.

sway's own MLX backend fuses the adapter at load time and so keeps two
model copies (base and fine-tuned) and has no scaled or null view. Here
every adapted linear layer is wrapped once, and a view only flips plain
attributes on the wrappers:

* base: the delta is skipped entirely (not multiplied by zero, which would
  turn a NaN adapter's base view into NaN too, unlike PEFT's
  ``disable_adapter``), and ``modules_to_save`` modules get the base's own
  weights back;
* fine-tuned: ``y = W x + scaling * (x a) b``, PEFT's LoRA forward (DoRA's
  and the embedding's below), with each module's own scaling;
* scaled(lam): the same with ``scaling * lam``;
* null(seed): ``a`` and ``b`` of every *linear* LoRA swapped for seeded
  Gaussian noise, the trained arrays put back on exit (MLX arrays are
  immutable, so "restore" is a reference assignment, not a copy). Like
  sway's, which picks parameters named ``lora_A``/``lora_B``, it leaves an
  embedding LoRA (``lora_embedding_A``/``_B``), DoRA magnitudes and saved
  modules trained.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from swayworker.mlx.adapter import AdapterPlan, UnsupportedAdapter
from swayworker.mlx.convert import Converted


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


class DoRALoRA(RuntimeLoRA):
    """PEFT's DoRA: ``bias + m / ||W + s B A||_row * (W x + s B A x)``, ``s`` the live scaling.

    The row norm is recomputed on every call from the current ``a``, ``b``
    and scaling (so scaled and null views rescale as PEFT's do), in float32.
    """

    def __init__(self, base: Any, a: Any, b: Any, scaling: float, magnitude: Any) -> None:
        super().__init__(base, a, b, scaling)
        self.magnitude = magnitude

    def __call__(self, x: Any) -> Any:
        if not self.enabled:
            return self.base(x)
        s = self.scaling * self.factor
        weight = self.base.weight.astype(mx.float32)
        lora_weight = (self.a.astype(mx.float32) @ self.b.astype(mx.float32)).T
        norm = mx.linalg.norm(weight + s * lora_weight, axis=1)
        scale = (self.magnitude.astype(mx.float32) / norm).astype(x.dtype)
        bias = getattr(self.base, "bias", None)
        plain = x @ self.base.weight.T
        delta = ((x.astype(self.a.dtype) @ self.a) @ self.b) * s
        y = scale * (plain + delta.astype(plain.dtype))
        return y if bias is None else y + bias


class EmbeddingLoRA(nn.Module):  # type: ignore[misc]
    """PEFT's embedding LoRA: ``E[ids] + scaling * a[ids] @ b``; ``as_linear`` is the base's.

    A tied output head reads the embedding matrix through ``as_linear``;
    PEFT adds the LoRA delta to the lookup only, never to that head.
    """

    def __init__(self, base: Any, a: Any, b: Any, scaling: float) -> None:
        super().__init__()
        self.base = base
        self.a = a
        self.b = b
        self.scaling = scaling
        self.factor = 1.0
        self.enabled = True

    def __call__(self, ids: Any) -> Any:
        y = self.base(ids)
        if not self.enabled:
            return y
        delta = self.a[ids] @ self.b
        return y + (delta * (self.scaling * self.factor)).astype(y.dtype)

    def as_linear(self, x: Any) -> Any:
        return self.base.as_linear(x)


Switchable = RuntimeLoRA | EmbeddingLoRA


class TiedHead(nn.Module):  # type: ignore[misc]
    """A trained ``lm_head`` copy (``modules_to_save``) on a model whose head is its embedding.

    mlx-lm computes a tied model's logits with ``embed_tokens.as_linear``
    and has no ``lm_head`` module to swap. PEFT's saved copy replaces only
    the head, so this wraps the embedding: lookups go to it unchanged, and
    ``as_linear`` uses ``head_weight`` while it is set (the adapter is on)
    and the embedding's own matrix when it is ``None`` (the base view).
    """

    def __init__(self, embedding: Any, head_weight: Any) -> None:
        super().__init__()
        self.embedding = embedding
        self.head_weight = head_weight

    def __call__(self, ids: Any) -> Any:
        return self.embedding(ids)

    def as_linear(self, x: Any) -> Any:
        if self.head_weight is None:
            return self.embedding.as_linear(x)
        return x @ self.head_weight.T


class SavedModules:
    """``modules_to_save``: the trained tensors while the adapter is on, the base's while off."""

    def __init__(self, swaps: list[tuple[Any, str, Any, Any]]) -> None:
        self._swaps = swaps  # (module, parameter, trained, original)
        self.use(trained=True)

    def use(self, *, trained: bool) -> None:
        for module, param, new, old in self._swaps:
            setattr(module, param, new if trained else old)


class LoraLayers:
    """Every runtime LoRA layer of one model, switched together for a view."""

    def __init__(
        self,
        layers: list[tuple[str, Switchable]],
        saved: SavedModules | None = None,
        *,
        plain: bool = False,
    ) -> None:
        self._layers = layers
        self._saved = saved or SavedModules([])
        self._plain = plain
        """Only linear LoRA pairs: no base weights, ``modules_to_save`` or DoRA magnitudes."""

    def rewrite(self, converted: Converted, plan: AdapterPlan, module_path: Any = None) -> bool:
        """Give every layer another adapter's ``a`` and ``b`` in place (a checkpoint swap).

        Only when both adapters are plain LoRA on exactly the same layers,
        with the same shapes and scalings: then the layers wrapped for the
        first are what ``attach`` would build for the second. Otherwise
        nothing changes and the answer is False (the caller loads afresh).
        """
        rename = module_path or (lambda path: path)
        plain = not (converted.magnitudes or converted.saved or converted.base_weights)
        if not (self._plain and plain):
            return False
        layers = dict(self._layers)
        arrays: dict[str, tuple[Any, Any]] = {}
        for spec in plan.modules:
            target = rename(spec.path)
            layer = layers.get(target)
            if type(layer) is not RuntimeLoRA or spec.kind != "linear":
                return False
            a, b = converted.lora[spec.path]
            same = layer.scaling == spec.scaling and tuple(a.shape) == tuple(layer.a.shape)
            if not same or tuple(b.shape) != tuple(layer.b.shape):
                return False
            arrays[target] = (a.astype(layer.a.dtype), b.astype(layer.b.dtype))
        if arrays.keys() != layers.keys():
            return False
        for target, (a, b) in arrays.items():
            layer = layers[target]
            assert isinstance(layer, RuntimeLoRA)
            layer.a, layer.b = a, b
        return True

    def __len__(self) -> int:
        return len(self._layers)

    @contextmanager
    def disabled(self) -> Iterator[None]:
        try:
            for _, layer in self._layers:
                layer.enabled = False
            self._saved.use(trained=False)
            yield
        finally:
            for _, layer in self._layers:
                layer.enabled = True
            self._saved.use(trained=True)

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
        """Replace every linear LoRA's ``a`` and ``b`` with N(0, std²) noise, restored on exit.

        The draws come from MLX's counter-based generator: one key from
        ``seed``, split into one key per array in layer-path order, so a seed
        gives the same noise on every call, device and worker of the same
        MLX version. It is not torch's generator, so the noise (and the null
        view's numbers) differ from the HF worker's for the same seed; only
        their distribution is the same.
        """
        linear = [layer for _, layer in self._layers if isinstance(layer, RuntimeLoRA)]
        keys = mx.random.split(mx.random.key(int(seed)), 2 * len(linear))
        saved = [(layer, layer.a, layer.b) for layer in linear]
        try:
            for i, layer in enumerate(linear):
                layer.a = _gaussian(layer.a, keys[2 * i], std)
                layer.b = _gaussian(layer.b, keys[2 * i + 1], std)
            yield
        finally:
            for layer, a, b in saved:
                layer.a, layer.b = a, b


def _gaussian(like: Any, key: Any, std: float) -> Any:
    noise = mx.random.normal(like.shape, dtype=mx.float32, key=key) * std
    return noise.astype(like.dtype)


def attach(
    model: Any,
    converted: Converted,
    plan: AdapterPlan,
    module_path: Any = None,
    tied_embedding: str = "model.embed_tokens",
) -> LoraLayers:
    """Wrap each adapted layer of ``model`` in place; return the switchable wrappers.

    ``module_path`` maps a PEFT module path to the mlx-lm model's (see
    ``compat.Shim.module_path``). Saved base weights are loaded first (PEFT
    loads them into the base layer, for every view), then each LoRA module
    is wrapped, then ``modules_to_save`` copies are put in place; a saved
    ``lm_head`` on a model that ties its head to ``tied_embedding`` goes in
    through :class:`TiedHead`.
    """
    rename = module_path or (lambda path: path)
    for (path, param), value in sorted(converted.base_weights.items()):
        module = _find(model, rename(path))
        _replace_tensor(module, param, value, path, "base weight")
    layers: list[tuple[str, Switchable]] = []
    for spec in plan.modules:
        a, b = converted.lora[spec.path]
        target = rename(spec.path)
        *parents, name = target.split(".")
        parent = _find(model, ".".join(parents)) if parents else model
        base = _child(parent, name, target)
        layer = _wrap(
            spec.kind, target, base, a, b, spec.scaling, converted.magnitudes.get(spec.path)
        )
        if isinstance(parent, list):
            parent[int(name)] = layer
        else:
            setattr(parent, name, layer)
        layers.append((target, layer))
    swaps: list[tuple[Any, str, Any, Any]] = []
    for (path, param), value in sorted(converted.saved.items()):
        if (path, param) == ("lm_head", "weight") and getattr(model, "lm_head", None) is None:
            swaps.append(_tie_head(model, tied_embedding, value))
            continue
        module = _find(model, rename(path))
        original = _replace_tensor(module, param, value, path, "modules_to_save")
        swaps.append((module, param, getattr(module, param), original))
    plain = not (converted.magnitudes or converted.saved or converted.base_weights)
    return LoraLayers(layers, SavedModules(swaps), plain=plain)


def _tie_head(model: Any, embedding_path: str, weight: Any) -> tuple[Any, str, Any, Any]:
    """Wrap the tied embedding in a :class:`TiedHead`; the swap that turns it on and off."""
    *parents, name = embedding_path.split(".")
    parent = _find(model, ".".join(parents)) if parents else model
    embedding = _child(parent, name, embedding_path)
    table = getattr(embedding, "weight", None)
    if table is None:
        table = getattr(getattr(embedding, "base", None), "weight", None)  # an EmbeddingLoRA
    if table is None or tuple(table.shape) != tuple(weight.shape):
        raise UnsupportedAdapter(
            f"the adapter saves a trained lm_head {tuple(weight.shape)}, but this mlx-lm model "
            f"ties its head to {embedding_path!r}, which does not match; serve this adapter "
            "with the hf worker instead"
        )
    head = TiedHead(embedding, weight.astype(table.dtype))
    setattr(parent, name, head)
    return (head, "head_weight", head.head_weight, None)


def _wrap(
    kind: str, path: str, base: Any, a: Any, b: Any, scaling: float, magnitude: Any
) -> Switchable:
    if kind == "embedding":
        if not isinstance(base, nn.Embedding):
            raise UnsupportedAdapter(
                f"the adapter has an embedding LoRA on {path!r}, a {type(base).__name__} here"
            )
        _check_shapes(path, base.weight.shape[0], base.weight.shape[1], a, b)
        dtype = base.weight.dtype
        return EmbeddingLoRA(base, a.astype(dtype), b.astype(dtype), scaling)
    _check_linear(path, base, a, b)
    dtype = _float_dtype(base)
    if magnitude is None:
        return RuntimeLoRA(base, a.astype(dtype), b.astype(dtype), scaling)
    if isinstance(base, nn.QuantizedLinear):
        raise UnsupportedAdapter(
            f"{path}: DoRA on an MLX-quantized layer needs its full weights; the MLX worker "
            "cannot run it (serve this adapter with the hf worker instead)"
        )
    return DoRALoRA(base, a.astype(dtype), b.astype(dtype), scaling, magnitude)


def _find(model: Any, path: str) -> Any:
    node = model
    for part in path.split("."):
        node = _child(node, part, path)
    return node


def _replace_tensor(module: Any, param: str, value: Any, path: str, what: str) -> Any:
    """Set ``module.param`` to ``value`` (same shape, the module's dtype); return the old one."""
    old = getattr(module, param, None)
    if old is None or tuple(old.shape) != tuple(value.shape):
        shape = None if old is None else tuple(old.shape)
        raise UnsupportedAdapter(
            f"the adapter's {what} tensor {path}.{param} has shape {tuple(value.shape)}, but "
            f"this mlx-lm model's is {shape}; serve this adapter with the hf worker instead"
        )
    setattr(module, param, value.astype(old.dtype))
    return old


def _child(node: Any, part: str, path: str) -> Any:
    """``node.part`` (or ``node[part]`` in a layer list), refused when absent."""
    try:
        child = node[int(part)] if isinstance(node, list) else getattr(node, part, None)
    except (IndexError, ValueError):
        child = None
    if child is None:
        raise UnsupportedAdapter(
            f"the adapter targets {path!r}, which this mlx-lm model does not have "
            "(its module names differ from the transformers model the adapter was trained on, "
            "or its weights are tied); serve this adapter with the hf worker instead"
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
    _check_shapes(path, in_features, module.weight.shape[0], a, b)


def _check_shapes(path: str, in_features: int, out_features: int, a: Any, b: Any) -> None:
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
