"""Backbones (parametrised over the registry) and the torch data helpers."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

from graphzoo.data.torchdata import (  # noqa: E402
    Augment,
    ImageTensorDataset,
    Normalizer,
    apply_view,
    to_image_tensor,
    tta_views,
)
from graphzoo.models import BACKBONES, HybridNet, create_backbone  # noqa: E402

torch.set_num_threads(1)

# Every registered name (a newly registered backbone is tested here without editing a list) and one
# torchvision model reached through the by-name fallback.
NAMES = BACKBONES.names() + ["mobilenet_v3_small"]
# The smallest size every backbone here supports: VGG-16's five 2x2 poolings bring 32 px to 1 px.
# Random weights, 2 images: the whole parametrised test takes a few seconds on one CPU thread.
SIZE = 32


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("in_chans", [1, 3])
def test_forward_backward(name, in_chans):
    torch.manual_seed(0)
    net = create_backbone(name, in_chans=in_chans)
    x = torch.randn(2, in_chans, SIZE, SIZE)
    z = net(x)
    assert z.shape == (2, net.out_dim)
    assert torch.isfinite(z).all()
    head = HybridNet(net, 3)
    loss = head(x).logsumexp(1).mean()
    loss.backward()
    # (the autoencoder's decoder is not on the classification path, so not every parameter has one)
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    assert head.head.weight.grad.abs().sum() > 0


def test_small_cnn_any_size_and_features():
    net = HybridNet(create_backbone("small_cnn"), 2)
    for size in (24, 50, 64):
        assert net(torch.randn(3, 1, size, size)).shape == (3, 2)
        assert net.features(torch.randn(3, 1, size, size)).shape == (3, net.backbone.out_dim)


def test_user_module_is_wrapped():
    user = nn.Sequential(nn.Conv2d(1, 5, 3), nn.ReLU())  # returns a 4-D map: pooled to (B, 5)
    net = create_backbone(user, in_chans=1)
    assert net.out_dim == 5
    assert net(torch.randn(4, 1, 20, 20)).shape == (4, 5)


def test_unknown_backbone_suggests():
    with pytest.raises(ValueError, match="Did you mean 'resnet18'"):
        create_backbone("resnt18")


def test_pretrained_from_local_file_adapts_gray(tmp_path):
    import torchvision

    full = torchvision.models.resnet18(weights=None)
    path = tmp_path / "rn18.pth"
    torch.save(full.state_dict(), path)
    net = create_backbone("resnet18", in_chans=1, pretrained=str(path))
    conv = net.model.conv1.weight
    assert torch.allclose(conv, full.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(net.model.layer4[1].conv2.weight, full.layer4[1].conv2.weight)


def test_pretrained_true_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        create_backbone("resnet18", pretrained=True)


@pytest.mark.parametrize("name", ["small_cnn", "resnet18"])
def test_own_backbone_from_run_checkpoint(tmp_path, name):
    """A run's best.pt warm-starts the same backbone (Dynamic Pass from a One Pass run)."""
    torch.manual_seed(1)
    net = HybridNet(create_backbone(name), 2)
    torch.save({"model": net.state_dict()}, tmp_path / "best.pt")
    again = create_backbone(name, pretrained=str(tmp_path / "best.pt"))
    x = torch.randn(2, 1, 32, 32)
    net.eval(), again.eval()
    assert torch.allclose(again(x), net.backbone(x))


def test_autoencoder_reconstructs_input_shape():
    ae = create_backbone("autoencoder", in_chans=1)
    x = torch.randn(2, 1, 50, 50)
    assert ae.reconstruct(x).shape == x.shape
    assert ae(x).shape == (2, ae.out_dim)


# ------------------------------------------------------------------ torchdata
def test_to_image_tensor_channels_and_sizes():
    gray = np.random.default_rng(0).integers(0, 256, (5, 20, 30), dtype=np.uint8)
    t = to_image_tensor(gray, size=16, in_chans=3)
    assert t.shape == (5, 3, 16, 16) and t.dtype == torch.uint8
    assert torch.equal(t[:, 0], t[:, 1])
    rgb = np.zeros((2, 8, 8, 3), np.uint8)
    rgb[..., 0] = 100
    g = to_image_tensor(rgb, in_chans=1)
    assert g.shape == (2, 1, 8, 8) and int(g[0, 0, 0, 0]) == round(0.299 * 100)
    mixed = to_image_tensor([np.zeros((10, 10), np.uint8), np.full((20, 20, 3), 9, np.uint8)], size=12, in_chans=1)
    assert mixed.shape == (2, 1, 12, 12) and int(mixed[1].max()) == 9
    with pytest.raises(ValueError, match="uint8"):
        to_image_tensor(np.zeros((2, 4, 4), np.float32))


def test_normalizer_uses_given_indices():
    x = torch.zeros(4, 1, 4, 4, dtype=torch.uint8)
    x[2:] = 255
    norm = Normalizer.fit(x, [0, 1, 2, 3])
    assert norm.mean.item() == pytest.approx(0.5) and norm.std.item() == pytest.approx(0.5)
    assert Normalizer.fit(x, [0, 1]).mean.item() == 0.0
    y = norm(x)
    assert y.mean().abs() < 1e-6 and y.std(unbiased=False).item() == pytest.approx(1.0)


def test_augment_is_reproducible_and_label_preserving_shape():
    x = torch.randn(8, 1, 16, 16)
    aug = Augment(degrees=30, scale=0.2, translate=0.1)
    a = aug(x, torch.Generator().manual_seed(3))
    b = aug(x, torch.Generator().manual_seed(3))
    assert a.shape == x.shape and torch.equal(a, b)
    ident = Augment(hflip=False, vflip=False, degrees=0, scale=0, translate=0)(x, torch.Generator())
    assert torch.allclose(ident, x, atol=1e-5)


def test_dataset_items():
    x = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)
    ds = ImageTensorDataset(x, np.arange(6), Normalizer([0.5], [0.25]), indices=[1, 4])
    img, target, idx = ds[1]
    assert len(ds) == 2 and img.shape == (1, 8, 8) and int(target) == 4 and idx == 4


def test_tta_views_are_the_augmentation_symmetries():
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5)
    d8 = [apply_view(x, v) for v in tta_views(True, True, True)]
    assert len(d8) == 8 and len({t.numpy().tobytes() for t in d8}) == 8  # all distinct
    # closed under a quarter turn and a mirror: the 8 symmetries of the square
    as_set = {t.numpy().tobytes() for t in d8}
    assert {torch.rot90(t, 1, dims=(2, 3)).numpy().tobytes() for t in d8} == as_set
    assert {t.flip(2).numpy().tobytes() for t in d8} == as_set
    flips = [apply_view(x, v) for v in tta_views(True, True, False)]
    expected = [x, x.flip(3), x.flip(2), x.flip(2).flip(3)]
    assert len(flips) == 4 and all(torch.equal(a, b) for a, b in zip(flips, expected))
    assert tta_views(False, False, False) == [(0, False)] and len(tta_views(False, False, True)) == 4


def test_infer_over_d8_views_is_rotation_invariant():
    """Averaged over the 8 symmetries, ψ and the logits no longer depend on the cell's orientation."""
    torch.manual_seed(0)
    net = HybridNet(create_backbone("small_cnn", in_chans=1, width=4), 2).eval()
    x = torch.randn(3, 1, 16, 16)
    views = tta_views(True, True, True)
    with torch.no_grad():
        lg, z = net.infer(x, views)
        lg_r, z_r = net.infer(torch.rot90(x, 1, dims=(2, 3)).flip(3), views)
        lg_1, z_1 = net.infer(x)
    torch.testing.assert_close(z_r, z, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lg_r, lg, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lg_1, net(x))  # one view: the plain forward pass
    assert not torch.allclose(z_1, z)  # and the single view is not already invariant
