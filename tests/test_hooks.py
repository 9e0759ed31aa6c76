"""Forward-hook activation recording: names, shapes, values equal to a manual forward, hooks removed afterwards."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_lib.hooks import (ActivationRecorder, model_layers, record_activations, resnet_layers, resolve_layers,
                              vit_block_outputs, vit_layers)
from course_lib.models import HybridViT, ResNetCIFAR, ViT, resnet18_cifar

# What the refusal of images a model never saw says: the caller, the problem, the fix.
UINT8 = r"{caller} got (torch\.)?uint8 images.*run\.preprocess\(images\)"
RAW_PIXELS = r"{caller} got pixel values up to \d+: these are raw 0\.\.255 pixels.*run\.preprocess\(images\)"


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return ViT(depth=3, dim=32, heads=2).eval()


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return resnet18_cifar().eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_layer_names():
    vit = ViT(depth=4, dim=32, heads=2)
    assert list(vit_layers(vit)) == ["block1", "block2", "block3", "block4"]
    r = resnet18_cifar()
    assert list(resnet_layers(r)) == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert list(resnet_layers(r, "blocks")) == ["stem"] + [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    convs = resnet_layers(r, "convs")
    assert len(convs) == 17 and list(convs)[:3] == ["stem.0", "layer1.0.conv1", "layer1.0.conv2"]
    assert all(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) for m in convs.values())
    assert list(model_layers(HybridViT(dim=32, depth=(1, 2), heads=(2, 2)))) == \
        ["stage1.block1", "stage2.block1", "stage2.block2"]


def test_vit_shapes_and_values(vit, images):
    acts = vit_block_outputs(vit, images)
    assert list(acts) == ["block1", "block2", "block3"]
    assert all(a.shape == (2, 65, 32) for a in acts.values())
    with torch.no_grad():
        # Manual forward through the blocks: every recorded tensor is the residual stream after that block.
        x = vit.embed(images)
        for i, block in enumerate(vit.blocks):
            x, _ = block(x)
            torch.testing.assert_close(acts[f"block{i + 1}"], x)
        torch.testing.assert_close(vit.head(vit.norm(acts["block3"])[:, 0]), vit(images))   # the classifier reads it
    assert not acts["block1"].requires_grad


def test_resnet_shapes_and_values(resnet, images):
    acts = record_activations(resnet, images, resnet_layers(resnet, "stages"))
    expected = {"stem": (64, 32, 32), "layer1": (64, 32, 32), "layer2": (128, 16, 16), "layer3": (256, 8, 8),
                "layer4": (512, 4, 4)}
    assert {k: tuple(v.shape[1:]) for k, v in acts.items()} == expected
    with torch.no_grad():
        torch.testing.assert_close(acts["layer4"], resnet.forward_features(images))
        convs = record_activations(resnet, images, resnet_layers(resnet, "convs"))
        # A conv's recorded output is the raw convolution of its input (before BN): recompute two by hand.
        torch.testing.assert_close(convs["stem.0"], F.conv2d(images, resnet.stem[0].weight, padding=1))
        block = resnet.layer2[0]
        torch.testing.assert_close(convs["layer2.0.conv1"],
                                   F.conv2d(acts["layer1"], block.conv1.weight, stride=2, padding=1))
    assert convs["layer4.1.conv2"].shape == (2, 512, 4, 4)


def test_hooks_removed_and_mode_restored(vit, images):
    assert _hook_count(vit) == 0
    with ActivationRecorder(vit, ["block2"], flatten=True) as rec:
        assert _hook_count(vit) == 1
        vit(images)
    assert _hook_count(vit) == 0
    assert rec.activations["block2"].shape == (2, 65 * 32)
    with pytest.raises(RuntimeError, match="boom"), ActivationRecorder(vit) as rec:
        raise RuntimeError("boom")                     # removed after an exception too
    assert _hook_count(vit) == 0
    vit.train()
    record_activations(vit, images)
    assert vit.training                                # train mode restored
    vit.eval()


def test_to_cpu_and_named_modules(vit, images):
    acts = record_activations(vit, images, ["block1", "blocks.0.attn", "norm"], to_cpu=True)
    assert acts["blocks.0.attn"].shape == (2, 65, 32)   # Attention returns (out, attn): the first is recorded
    assert acts["norm"].device.type == "cpu"


def test_unknown_layer_lists_available(vit, resnet):
    with pytest.raises(ValueError, match=r"Unknown layer 'block9'.*block1"):
        resolve_layers(vit, ["block9"])
    with pytest.raises(ValueError, match=r"layer1\.0\.conv1"):
        resolve_layers(resnet, ["layer5"])
    with pytest.raises(ValueError, match="granularity"):
        resnet_layers(resnet, "neurons")
    with pytest.raises(TypeError, match="list of names"):
        resolve_layers(vit, "block1")
    with pytest.raises(TypeError, match="Pass the layers explicitly"):
        model_layers(torch.nn.Linear(2, 2))


def test_layer_that_does_not_run(images):
    model = ResNetCIFAR(blocks=(1, 1, 1, 1), width=8)
    unused = torch.nn.Linear(3, 3)
    with pytest.raises(RuntimeError, match="did not run"):
        record_activations(model, images, {"stem": model.stem, "unused": unused})


def test_activations_in_layer_order_inside_the_with_block(resnet, images):
    # Nested layers fire inside out: a stage's convolutions run before the stage returns. The activations must be
    # in the order of `layers` while the block is open too (CKA rows are paired with names by position).
    layers = {"layer1": resnet.layer1, "layer1.0.conv1": resnet.layer1[0].conv1, "stem": resnet.stem,
              "layer1.1.conv2": resnet.layer1[1].conv2}
    with torch.no_grad(), ActivationRecorder(resnet, layers) as rec:
        resnet(images)
        inside = rec.activations
        assert list(inside) == list(layers)
        stem = resnet.stem(images)                           # an independent forward, by hand
        layer1 = resnet.layer1(stem)
        expected = {"layer1": layer1, "layer1.0.conv1": F.conv2d(stem, resnet.layer1[0].conv1.weight, padding=1),
                    "stem": stem}
        for name, want in expected.items():
            torch.testing.assert_close(inside[name], want)
    assert list(rec.activations) == list(layers)


def test_refuses_pixels_the_model_never_saw(vit, images):
    raw = (images.clamp(-2, 2) + 2) * 63.75                          # 0..255 floats
    for fn in (lambda x: record_activations(vit, x), lambda x: vit_block_outputs(vit, x)):
        with pytest.raises(ValueError, match=RAW_PIXELS.format(caller="record_activations")):
            fn(raw)
        with pytest.raises(ValueError, match=UINT8.format(caller="record_activations")):
            fn(raw.to(torch.uint8))
    vit.train()
    with pytest.raises(ValueError):
        record_activations(vit, raw)
    assert vit.training                                              # mode untouched by a refused call
    vit.eval()
    # Any other module: non-image inputs are recorded as they are.
    lin = torch.nn.Linear(3, 2)
    assert record_activations(lin, torch.full((4, 3), 100.0), {"lin": lin})["lin"].shape == (4, 2)
