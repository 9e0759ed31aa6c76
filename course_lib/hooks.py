"""Forward hooks that record a model's intermediate activations by layer name, and the course's layer lists.

A forward hook is a function PyTorch calls right after a module's ``forward`` with ``(module, inputs, output)``.
:class:`ActivationRecorder` registers one per requested layer, stores each output under the layer's name, and removes
every hook when the ``with`` block ends (also after an exception), so the model is left exactly as it was::

    with ActivationRecorder(model, vit_layers(model)) as rec:
        model(x)
    rec.activations["block3"]          # (B, T, D)

or in one call: ``record_activations(model, x)`` (eval mode, no gradients). :func:`model_input_batches` turns data
(an ImageSet, images, a loader) into a model's input batches, for recording over many images.

Layer names used by the course (``model_layers(model)`` picks the right list):

The lists live on the models (``model.named_layers()``); :func:`vit_layers` and :func:`resnet_layers` check the
model's type and return them.

ViT (:func:`vit_layers`): "block1" ... "blockN", the token sequence (B, T, D) after each transformer block (the
    residual stream, before the final LayerNorm).
ResNet-18 (:func:`resnet_layers`):
    granularity="stages": "stem", "layer1" ... "layer4": the output of the stem (after BN + ReLU) and of each stage
        (after the last block's residual addition and ReLU), e.g. layer2 (B, 128, 16, 16).
    granularity="blocks": "stem", "layer1.0", "layer1.1", ..., "layer4.1": the output of each of the 8 basic blocks.
    granularity="convs": the 17 convolutions Zhu et al. show: "stem.0" and "layerX.Y.conv1", "layerX.Y.conv2"
        (16 = 8 blocks x 2). We record the **raw output of each convolution** (before its BatchNorm and ReLU),
        because that is what hooking the ``nn.Conv2d`` module gives, and it is the "feature map of a convolution"
        that visualisations show. The post-ReLU activations are not separately hookable in this ResNet (ReLU is a
        function call inside ``BasicBlock.forward``); use granularity="blocks" for post-activation block outputs.
        The 1x1 projection shortcuts are not included.

Caveat: the hooks store the module's output tensor itself (detached, not copied). If a later operation modified it
in place (e.g. an ``nn.ReLU(inplace=True)`` applied directly to a hooked BatchNorm's output), the stored value would
change too; none of the course's recorded layers is followed by an in-place operation.
"""
from __future__ import annotations

from typing import Iterator, Mapping, Sequence, Union

import torch
import torch.nn as nn

from .data import ImageSet, Preprocessing
from .models import HybridViT, ResNetCIFAR, ViT
from .models.common import check_pixels
from .runtime import eval_mode

__all__ = ["ActivationRecorder", "record_activations", "vit_block_outputs", "vit_layers", "resnet_layers",
           "model_layers", "resolve_layers", "model_input_batches"]

# A layer specification: an ordered name -> module mapping, or a list of names (see resolve_layers).
Layers = Union[Mapping[str, nn.Module], Sequence[str]]


def vit_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Ordered {"block1": model.blocks[0], ...} of a course ViT (:meth:`ViT.named_layers`)."""
    if not isinstance(model, ViT):
        raise TypeError(f"vit_layers expects a course_lib ViT (with .blocks), got {type(model).__name__}.")
    return model.named_layers()


def resnet_layers(model: nn.Module, granularity: str = "stages") -> dict[str, nn.Module]:
    """Ordered layers of a :class:`~course_lib.models.ResNetCIFAR` (:meth:`ResNetCIFAR.named_layers`; the module
    docstring says what each records): ``granularity`` "stages", "blocks" or "convs"."""
    if not isinstance(model, ResNetCIFAR):
        raise TypeError(f"resnet_layers expects a course_lib ResNetCIFAR (stem, layer1..layer4), "
                        f"got {type(model).__name__}.")
    return model.named_layers(granularity)


def model_layers(model: nn.Module, granularity: str = "stages") -> dict[str, nn.Module]:
    """The default layers of a course model (its ``named_layers``): ViT blocks, ResNet layers at ``granularity``,
    HybridViT blocks."""
    if isinstance(model, ResNetCIFAR):
        return model.named_layers(granularity)
    if isinstance(model, (ViT, HybridViT)):
        return model.named_layers()
    raise TypeError(f"No default layer list for {type(model).__name__}. Pass the layers explicitly: a dict "
                    "{name: module} or a list of names from model.named_modules().")


def resolve_layers(model: nn.Module, layers: Layers | None = None) -> dict[str, nn.Module]:
    """Turn a layer specification into an ordered {name: module} dict.

    ``layers`` may be None (the model's default layers, :func:`model_layers`), a mapping name -> module (used as
    is), or a list of names. A name is looked up first among the course names of this model ("block3",
    "layer2.0.conv1", "stem", ...) and then among ``model.named_modules()`` ("blocks.2.attn", ...).

    Raises:
        ValueError: a name matches neither; the message lists the available names.
    """
    if layers is None:
        return model_layers(model)
    if isinstance(layers, Mapping):
        return dict(layers)
    if isinstance(layers, str):
        raise TypeError(f"layers must be a list of names, not the string {layers!r}: write [{layers!r}].")
    known: dict[str, nn.Module] = {}
    try:
        for granularity in ("stages", "blocks", "convs"):
            known.update(model_layers(model, granularity))
    except TypeError:       # not a course model: only named_modules() names
        pass
    modules = dict(model.named_modules())
    resolved = {}
    for name in layers:
        if name in known:
            resolved[name] = known[name]
        elif name in modules and name != "":
            resolved[name] = modules[name]
        else:
            course = f"course names: {list(known)}; " if known else ""
            raise ValueError(f"Unknown layer {name!r} for {type(model).__name__}. Available {course}or any name "
                             f"from model.named_modules(), e.g. {[n for n in modules if n][:12]} ...")
    return resolved


class ActivationRecorder:
    """Context manager that records the outputs of named modules during forward passes.

    Args:
        model: any ``nn.Module``.
        layers: None (the model's default layers), a {name: module} mapping, or a list of names
            (see :func:`resolve_layers`).
        to_cpu: move each recorded tensor to the CPU (saves accelerator memory for big batches).
        flatten: store ``(B, -1)`` instead of the module's output shape (what CKA needs).

    Attributes:
        layers: the resolved ordered {name: module}.
        activations: {name: Tensor} of the layers that ran, always in the order of ``layers`` (inside the ``with``
            block too, whatever order the modules fire in: a stage fires after the convolutions inside it). Each
            forward pass overwrites it. A new dict at each access: read it once per batch.

    A module that returns a tuple (our ViT blocks return ``(tokens, attention)``) is recorded by its first element.
    Tensors are detached: the recorder never keeps the autograd graph alive.
    """

    def __init__(self, model: nn.Module, layers: Layers | None = None, to_cpu: bool = False, flatten: bool = False):
        self.model = model
        self.layers = resolve_layers(model, layers)
        self.to_cpu, self.flatten = to_cpu, flatten
        self._recorded: dict[str, torch.Tensor] = {}      # in firing order
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    @property
    def activations(self) -> dict[str, torch.Tensor]:
        return {n: self._recorded[n] for n in self.layers if n in self._recorded}

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs, output) -> None:
            out = output[0] if isinstance(output, (tuple, list)) else output
            out = out.detach()
            if self.to_cpu:
                out = out.cpu()
            if self.flatten:
                out = out.flatten(1)
            self._recorded[name] = out
        return hook

    def __enter__(self) -> "ActivationRecorder":
        if self._handles:
            raise RuntimeError("This ActivationRecorder is already active; use one `with` block at a time.")
        self._recorded = {}
        self._handles = [module.register_forward_hook(self._hook(name)) for name, module in self.layers.items()]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def missing(self) -> list[str]:
        """Names of the requested layers that did not run in the last forward pass."""
        return [n for n in self.layers if n not in self._recorded]

    def clear(self) -> None:
        self._recorded = {}


def record_activations(model: nn.Module, x: torch.Tensor, layers: Layers | None = None, to_cpu: bool = False,
                       flatten: bool = False) -> dict[str, torch.Tensor]:
    """Run ``model(x)`` once in eval mode without gradients and return {name: activation} for ``layers``.

    The model's train/eval mode is restored afterwards. ``x`` is the model's input as in training: images
    (B, C, H, W) must be preprocessed floats (``run.preprocess(uint8_images)``), see :func:`check_pixels`.

    Raises:
        ValueError: uint8 or raw 0..255 images.
        RuntimeError: a requested layer did not run during the forward pass.
    """
    check_pixels(x, "record_activations")
    with eval_mode(model), ActivationRecorder(model, layers, to_cpu=to_cpu, flatten=flatten) as rec:
        model(x)
    if missing := rec.missing():
        raise RuntimeError(f"Layers {missing} did not run during model(x), so nothing was recorded for them.")
    return rec.activations


def vit_block_outputs(model: nn.Module, x: torch.Tensor, to_cpu: bool = False,
                      flatten: bool = False) -> dict[str, torch.Tensor]:
    """{"block1": (B, T, D), ..., "blockN": (B, T, D)}: the ViT's token sequence after every block."""
    return record_activations(model, x, vit_layers(model), to_cpu=to_cpu, flatten=flatten)


# --------------------------------------------------------------------------------------------------------------
# The input of a model that activations are recorded from, batch by batch

def _batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """[(start, end)] cutting n examples into batches; a last batch smaller than 4 (too small for HSIC₁) joins the
    one before it."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] < 4:
        starts.pop()
    return [(s, starts[k + 1] if k + 1 < len(starts) else n) for k, s in enumerate(starts)]


def _model_input(x: torch.Tensor, preprocess: Preprocessing | None, caller: str) -> torch.Tensor:
    """uint8 images through ``preprocess``; float images as they are (then ``preprocess`` must be None)."""
    if x.dtype == torch.uint8:
        if preprocess is None:
            raise ValueError(f"{caller} got uint8 images, but the models take the float input they were trained on. "
                             "Pass the ImageSet itself, or preprocess=run.preprocess, or convert with the run's "
                             "preprocessing, e.g. run.preprocess(images).")
        return preprocess(x)
    if preprocess is not None:
        raise ValueError(f"preprocess= converts uint8 images, but {caller} got {x.dtype} images: these should "
                         "already be the model's input. Drop preprocess=, or pass the uint8 images (or ImageSet).")
    return x


def model_input_batches(data, batch_size: int, device: torch.device, preprocess: Preprocessing | None = None,
                        caller: str = "model_input_batches") -> Iterator[torch.Tensor]:
    """A model's input batches (b, 3, H, W) on ``device``, from an ImageSet (its uint8 images through ``preprocess``,
    default its data set's standardisation), uint8 images with ``preprocess``, float images that already are the
    model's input, or an iterable of batches (images or (images, labels) tuples, e.g. a ``GPULoader``).

    Tensors and ImageSets are cut into batches of ``batch_size`` (a last batch smaller than 4 joins the one before
    it). Raw 0..255 pixels are looked for once, in a whole float tensor or in a loader's first batch (the output of a
    Preprocessing is the model's input by construction); the errors name ``caller``."""
    if isinstance(data, ImageSet):
        preprocess = preprocess if preprocess is not None else Preprocessing.for_dataset(data.dataset)
        data = data.images
    if isinstance(data, torch.Tensor):
        if data.is_floating_point():
            check_pixels(data, caller)
        batches = (data[s:e] for s, e in _batch_bounds(len(data), batch_size))
    else:                  # a loader: (images, labels, ...) tuples or bare image tensors
        batches = (item[0] if isinstance(item, (tuple, list)) else item for item in data)
    for i, x in enumerate(batches):
        x = _model_input(x.to(device), preprocess, caller)
        if i == 0 and not isinstance(data, torch.Tensor) and preprocess is None:
            check_pixels(x, caller)
        yield x
