import pytest
import torch
import torch.nn.functional as F

from dataclasses import asdict

from conftest import tiny_vit
from course_lib.models import (HybridViT, ResNetCIFAR, ViT, ViTConfig, count_parameters, create_model,
                               model_label, resnet18_cifar, vit_lite, vit_paper)


def expected_vit_params(dim, depth, mlp_ratio, patch, classes, tokens, qkv_bias, chans=3) -> int:
    """Parameter count of a pre-norm ViT, written out term by term."""
    hidden = int(dim * mlp_ratio)
    block = (2 * 2 * dim                                   # two LayerNorms
             + dim * 3 * dim + (3 * dim if qkv_bias else 0)  # qkv projection
             + dim * dim + dim                             # output projection
             + dim * hidden + hidden + hidden * dim + dim)  # MLP
    return (chans * patch * patch * dim + dim              # patch embedding
            + dim + tokens * dim                           # class token, position embeddings
            + depth * block + 2 * dim + dim * classes + classes)


def test_parameter_counts_match_the_references():
    # Zhu et al.'s ViT: the kentaroy47/vision-transformers-cifar10 model has 9,523,722 parameters for 10 classes.
    assert count_parameters(vit_paper(10)) == 9_523_722
    # ResNet-18 for CIFAR (kuangliu/pytorch-cifar): 11,173,962 parameters.
    assert count_parameters(resnet18_cifar(10)) == 11_173_962
    assert count_parameters(vit_lite(10)) == expected_vit_params(192, 9, 2.0, 4, 10, 65, True)
    assert count_parameters(vit_lite(100)) == expected_vit_params(192, 9, 2.0, 4, 100, 65, True)


def test_models_are_built_from_frozen_configs():
    m = ViT(img_size=32, patch_size=8, num_classes=7, dim=48, depth=3, heads=6, mlp_ratio=1.5, pool="mean")
    for name, value in dict(img_size=32, patch_size=8, num_classes=7, dim=48, depth=3, heads=6, mlp_ratio=1.5,
                            pool="mean").items():
        assert getattr(m.config, name) == value
    assert ViT(**asdict(m.config)).config == m.config == ViT(m.config).config
    assert (m.grid_size, m.grid_dim, m.num_classes) == (4, 48, 7)         # no probing with a dummy forward pass
    with pytest.raises(Exception):
        m.config.dim = 64                                                  # frozen
    for name in ["vit", "vit_paper", "resnet18", "hybrid_vit"]:
        model = create_model(name)
        grid = model.eval().forward_grid(torch.zeros(1, 3, 32, 32))
        assert grid.shape[1:] == (model.grid_dim, model.grid_size, model.grid_size), name
    assert model_label("vit", drloc=True) == "ViT+DRLoc" and model_label("resnet18") == "ResNet-18"


def test_the_paper_vit_is_initialised_as_its_reference():
    """kentaroy47's ViT: torch.randn position embedding and class token, PyTorch's default Linear init."""
    torch.manual_seed(0)
    m = vit_paper()
    assert 0.9 < m.pos_embed.std().item() < 1.1 and m.cls_token.numel() == 512
    fc1 = m.blocks[0].mlp.fc1.weight                      # default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert fc1.abs().max().item() <= 512 ** -0.5 + 1e-6 and fc1.abs().max().item() > 0.9 * 512 ** -0.5
    assert m.blocks[0].mlp.fc1.bias.abs().max().item() > 0            # biases are not zeroed there
    lite = vit_lite()
    assert lite.pos_embed.std().item() < 0.03 and (lite.blocks[0].mlp.fc1.bias == 0).all()


@pytest.mark.parametrize("patch,k", [(4, 8), (2, 16), (8, 4)])
def test_vit_shapes(patch, k):
    m = tiny_vit(heads=4, mlp_ratio=2.0, patch_size=patch, num_classes=5).eval()
    x = torch.randn(3, 3, 32, 32)
    assert m(x).shape == (3, 5)
    assert m.forward_features(x).shape == (3, 1 + k * k, 32)
    assert m.forward_grid(x).shape == (3, 32, k, k)
    logits, attn = m.forward_with_attention(x)
    assert len(attn) == 2 and attn[0].shape == (3, 4, 1 + k * k, 1 + k * k)
    assert torch.allclose(attn[1].sum(-1), torch.ones(3, 4, 1 + k * k), atol=1e-5)


@pytest.mark.parametrize("pool,class_token", [("cls", True), ("mean", True), ("mean", False)])
def test_attention_path_gives_the_same_logits(pool, class_token):
    torch.manual_seed(0)
    m = ViT(dim=64, depth=3, heads=4, pool=pool, class_token=class_token).eval()
    x = torch.randn(4, 3, 32, 32)
    logits, attn = m.forward_with_attention(x)
    assert torch.allclose(logits, m(x), atol=1e-5)
    assert attn[0].shape[-1] == 64 + class_token


def test_attention_weights_are_the_softmax_of_scaled_scores():
    torch.manual_seed(0)
    m = tiny_vit(heads=4, mlp_ratio=2.0).eval()
    x = torch.randn(2, 3, 32, 32)
    tokens = m.embed(x)
    _, attn = m.forward_with_attention(x)
    block = m.blocks[0]
    h = block.norm1(tokens)
    q, k, _ = block.attn.qkv(h).split(32, dim=-1)
    q = q.view(2, -1, 4, 8).transpose(1, 2)
    k = k.view(2, -1, 4, 8).transpose(1, 2)
    expected = torch.softmax(q @ k.transpose(-1, -2) / 8 ** 0.5, dim=-1)
    assert torch.allclose(attn[0], expected, atol=1e-6)


def test_grid_is_row_major_and_patches_are_local():
    torch.manual_seed(0)
    m = tiny_vit(heads=4, mlp_ratio=2.0).eval()
    x = torch.randn(2, 3, 32, 32)
    tokens, grid = m.forward_blocks(x), m.forward_grid(x)
    normed = m.forward_grid(x, final_norm=True)
    for i, j in [(0, 0), (0, 7), (5, 2), (7, 7)]:
        assert torch.allclose(grid[:, :, i, j], tokens[:, 1 + i * 8 + j])
        assert torch.allclose(normed[:, :, i, j], m.norm(tokens)[:, 1 + i * 8 + j])
    assert torch.allclose(m(x), m.head(m.norm(tokens)[:, 0]))          # the head pools the normed class token
    # Changing the pixels of patch (row 2, col 5) changes exactly that token of the embedding.
    x2 = x.clone()
    x2[:, :, 8:12, 20:24] += 1.0
    changed = (m.embed(x2) - m.embed(x)).abs().sum(dim=(0, 2)) > 0
    assert changed.nonzero().flatten().tolist() == [1 + 2 * 8 + 5]


def test_dropout_paths_agree_in_training_mode_without_dropout():
    torch.manual_seed(0)
    m = tiny_vit(heads=4, mlp_ratio=2.0).train()
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(m.forward_with_attention(x)[0], m(x), atol=1e-5)


def test_bad_configurations_and_inputs_get_clear_errors():
    with pytest.raises(ValueError, match="not divisible by patch_size=5.*Pick a patch size"):
        ViT(img_size=32, patch_size=5)
    with pytest.raises(ValueError, match="dim=30 is not divisible by heads=4"):
        ViT(dim=30, heads=4)
    with pytest.raises(ValueError, match="pool must be"):
        ViT(pool="max")
    with pytest.raises(ValueError, match="class_token=True"):
        ViT(pool="cls", class_token=False)
    m = tiny_vit(heads=4, mlp_ratio=2.0)
    with pytest.raises(ValueError, match="built for 32x32 images, got 64x64.*img_size=64"):
        m(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="expects 3 channels.*permute"):
        m(torch.randn(1, 32, 32, 3))
    with pytest.raises(ValueError, match="unsqueeze"):
        m(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="float images.*preprocess"):
        m(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    # Raw 0..255 float pixels are refused where a reader's tensors come in (recorder, rollout, CKA), not by a host
    # sync in every forward pass.
    from course_lib.hooks import record_activations

    with pytest.raises(ValueError, match="raw 0..255 pixels.*preprocess"):
        record_activations(m.eval(), torch.full((1, 3, 32, 32), 200.0), ["block1"])
    for bad in [dict(heads=0), dict(patch_size=0), dict(dim=-8), dict(depth=2.5), dict(dropout=1.0),
                dict(mlp_ratio=0), dict(init="xavier")]:
        with pytest.raises(ValueError, match="ViTConfig|divisible|mlp_ratio|init"):
            ViT(**bad)
    with pytest.raises(ValueError, match="4 stages"):
        ResNetCIFAR(blocks=(2, 2))
    with pytest.raises(ValueError, match="Unknown model 'vgg'.*resnet18"):
        create_model("vgg")


def test_resnet18_stages_and_grid():
    m = resnet18_cifar(10).eval()
    x = torch.randn(2, 3, 32, 32)
    shapes = {}
    h = m.stem(x)
    shapes["stem"] = h.shape[1:]
    for name in ["layer1", "layer2", "layer3", "layer4"]:
        h = getattr(m, name)(h)
        shapes[name] = h.shape[1:]
    assert shapes == {"stem": (64, 32, 32), "layer1": (64, 32, 32), "layer2": (128, 16, 16),
                      "layer3": (256, 8, 8), "layer4": (512, 4, 4)}
    assert torch.allclose(m.forward_grid(x), h) and torch.allclose(m(x), m.fc(h.mean(dim=(2, 3))), atol=1e-6)
    convs = [n for n, mod in m.named_modules() if isinstance(mod, torch.nn.Conv2d) and "shortcut" not in n]
    assert len(convs) == 17                                  # the 17 feature maps of Zhu et al.
    assert m.prefers_channels_last


def test_hybrid_has_a_coarser_final_grid():
    m = HybridViT().eval()
    x = torch.randn(2, 3, 32, 32)
    assert m.input_grid == 8 and m.grid_size == 4
    assert m.forward_grid(x).shape == (2, 256, 4, 4) and m(x).shape == (2, 10)
    with pytest.raises(ValueError, match="multiple of 8"):
        HybridViT(img_size=36)


def test_all_registered_models_train_one_step():
    for name in ["vit", "resnet18", "hybrid_vit"]:
        torch.manual_seed(0)
        m = create_model(name, num_classes=3)
        x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
        F.cross_entropy(m(x), y).backward()
        assert all(p.grad is not None for p in m.parameters()), name


@pytest.mark.parametrize("name", ["vit", "vit_paper", "resnet18", "hybrid_vit"])
def test_forward_is_forward_head_of_forward_features_as_in_timm(name):
    """timm's contract, bit for bit: forward(x) == forward_head(forward_features(x)), forward_features including
    the final norm; forward_blocks stops before it (a ResNet has none: its norm is the identity)."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features, blocks = model.forward_features(x), model.forward_blocks(x)
        assert torch.equal(model(x), model.forward_head(features))
        assert torch.equal(features, model.norm(blocks))
    if name == "resnet18":
        assert isinstance(model.norm, torch.nn.Identity) and torch.equal(features, blocks)
    else:
        assert isinstance(model.norm, torch.nn.LayerNorm) and not torch.allclose(features, blocks)


def test_vit_logits_by_hand_from_its_parts():
    """The ViT's logits from its parts in plain torch (patches, class token, position, blocks, the final LayerNorm,
    the class token, the linear head), equal bit for bit to forward(x)."""
    torch.manual_seed(0)
    m = tiny_vit().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        t = m.patch_embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([m.cls_token.expand(2, -1, -1), t], dim=1) + m.pos_embed
        for block in m.blocks:
            t, _ = block(t)
        t = F.layer_norm(t, (32,), m.norm.weight, m.norm.bias, m.norm.eps)
        assert torch.equal(m.forward_features(x), t)
        assert torch.equal(m(x), F.linear(t[:, 0], m.head.weight, m.head.bias))
