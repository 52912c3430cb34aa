"""Grad-CAM: the map equals the paper's formula and lands where the evidence is."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _explain_helpers import tiny_cnn
from cnnlab.errors import ConfigError
from cnnlab.explain.gradcam import grad_cam, gradcam_figure, overlay


def _blob_detector() -> nn.Sequential:
    """Hand-set: a 3x3 box filter finds bright blobs anywhere; class 1 = 'there is a blob'."""
    conv = nn.Conv2d(1, 1, 3, padding=1)
    fc = nn.Linear(1, 2)
    with torch.no_grad():
        conv.weight.fill_(1 / 9)
        conv.bias.fill_(-0.2)
        fc.weight.copy_(torch.tensor([[-4.0], [4.0]]))
        fc.bias.zero_()
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc).eval()


def _image_with_square(top: int, left: int, size: int = 16) -> torch.Tensor:
    x = torch.zeros(1, 1, size, size)
    x[..., top:top + 4, left:left + 4] = 1.0
    return x


@pytest.mark.parametrize("top,left,quadrant", [(1, 2, (0, 0)), (10, 11, (1, 1)), (2, 10, (0, 1))])
def test_hand_built_model_cam_peaks_on_the_square(top, left, quadrant):
    x = _image_with_square(top, left)
    cam, k, probs = grad_cam(_blob_detector(), x, class_index=1)
    assert cam.shape == (16, 16) and k == 1
    assert float(cam.min()) >= 0 and float(cam.max()) == pytest.approx(1.0)
    r, c = np.unravel_index(int(cam.argmax()), cam.shape)
    assert (r // 8, c // 8) == quadrant
    assert top - 1 <= r <= top + 4 and left - 1 <= c <= left + 4
    assert float(probs.sum()) == pytest.approx(1.0)


def test_cam_matches_the_paper_formula_and_restores_the_model():
    model = tiny_cnn().train()
    model[3].weight.grad = None
    x = torch.randn(1, 1, 8, 8)
    cam, k, probs = grad_cam(model, x)  # default: last conv ("3"), predicted class
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())  # no parameter gradients computed
    model.eval()
    feats = {}
    h = model[3].register_forward_hook(lambda m, i, o: feats.setdefault("a", o))
    logits = model(x)
    h.remove()
    assert k == int(logits.argmax()) and torch.allclose(probs, torch.softmax(logits, 1)[0].detach())
    a = feats["a"]
    (g,) = torch.autograd.grad(logits[0, k], a)
    expect = torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True))
    expect = F.interpolate(expect, size=(8, 8), mode="bilinear", align_corners=False)[0, 0]
    expect = expect / expect.max()
    torch.testing.assert_close(cam, expect.detach(), rtol=1e-4, atol=1e-6)


def test_target_layer_and_class_can_be_chosen():
    model = tiny_cnn()
    x = torch.randn(1, 1, 8, 8)
    first = grad_cam(model, x, target_layer="0", class_index=2)
    assert first.class_index == 2 and first.cam.shape == (8, 8)
    after_relu = grad_cam(model, x, target_layer="5", class_index=2)  # in-place ReLU module
    assert after_relu.cam.shape == (8, 8)
    with pytest.raises(ConfigError, match="out of range"):
        grad_cam(model, x, class_index=7)
    with pytest.raises(ConfigError, match="not in this model"):
        grad_cam(model, x, target_layer="layer4")


PLUS = torch.tensor([[0, 0, 1, 0, 0], [0, 0, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 1, 0, 0],
                     [0, 0, 1, 0, 0]], dtype=torch.float32)


def _corner_data(n, g):
    """Class 1 iff a plus sign sits in the top-left quadrant; every image has noise, and half of
    them a distractor (a filled square, as bright) in the bottom-right quadrant."""
    x = 0.3 * torch.rand(n, 1, 16, 16, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    for i in range(n):
        if y[i]:
            r, c = torch.randint(0, 4, (2,), generator=g).tolist()
            x[i, 0, r:r + 5, c:c + 5] = torch.maximum(x[i, 0, r:r + 5, c:c + 5], PLUS)
        if torch.rand(1, generator=g) < 0.5:
            r, c = torch.randint(9, 13, (2,), generator=g).tolist()
            x[i, 0, r:r + 3, c:c + 3] = 1.0
    return x, y


def test_trained_model_finds_the_evidence_in_the_top_left_corner():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    x, y = _corner_data(512, g)
    for _ in range(15):
        for i in range(0, 512, 64):
            loss = F.cross_entropy(model(x[i:i + 64]), y[i:i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    xt, yt = _corner_data(200, g)
    with torch.no_grad():
        assert (model(xt).argmax(1) == yt).float().mean() > 0.9
    # positives, each given a distractor in the bottom-right: the evidence must sit top-left
    tl, br, hits = [], [], 0
    for i in torch.nonzero(yt == 1).flatten()[:10].tolist():
        img = xt[i:i + 1].clone()
        img[0, 0, 11:14, 11:14] = 1.0
        cam = grad_cam(model, img, class_index=1).cam
        tl.append(float(cam[:8, :8].mean()))
        br.append(float(cam[8:, 8:].mean()))
        r, c = np.unravel_index(int(cam.argmax()), cam.shape)
        hits += r < 8 and c < 8
    assert hits >= 9 and np.mean(tl) > 1.5 * np.mean(br)


def test_gradcam_figure_shows_image_and_overlay():
    img = (torch.rand(3, 10, 12) * 255).to(torch.uint8)
    cam = torch.zeros(10, 12)
    cam[2, 3] = 1.0
    fig = gradcam_figure(img, cam, "cat")
    image_axes = [ax for ax in fig.axes if ax.get_images()]
    assert len(image_axes) == 2 and len(fig.axes) == 3  # + colour bar
    np.testing.assert_allclose(image_axes[0].get_images()[0].get_array(),
                               img.permute(1, 2, 0).numpy() / 255, atol=1e-6)
    blend = overlay(img, cam, alpha=0.5)
    assert blend.shape == (10, 12, 3)
    assert blend[2, 3, 0] > blend[0, 0, 0] - 0.5 * img[0, 0, 0].item() / 255  # red where hot


def test_a_model_ending_in_softmax_is_explained_by_its_logit():
    # Grad-CAM differentiates the class logit; for a model ending in softmax that is the softmax's
    # input, not log p (whose gradient also carries log-sum-exp's and gives another map)
    import cnnlab
    from cnnlab.layers import Activation, Conv2D, Dense, Flatten

    torch.manual_seed(0)
    body = [Conv2D(6, 3, padding="same", activation="relu"), Conv2D(8, 3, activation="relu"),
            Flatten()]
    logits_model = cnnlab.Sequential([*body, Dense(5)], input_shape=(1, 10, 10))
    for softmax_model in (
            cnnlab.Sequential([*body, Dense(5, activation="softmax")], input_shape=(1, 10, 10)),
            cnnlab.Sequential([*body, Dense(5), Activation("softmax")], input_shape=(1, 10, 10))):
        softmax_model.load_state_dict(logits_model.state_dict())
        for seed in range(5):
            x = torch.randn(1, 1, 10, 10, generator=torch.Generator().manual_seed(seed))
            for k in range(5):
                want = grad_cam(logits_model, x, class_index=k)
                got = grad_cam(softmax_model, x, class_index=k)
                assert torch.allclose(got.cam, want.cam, atol=1e-6), (seed, k)
                assert torch.allclose(got.probs, want.probs, atol=1e-6)


def test_a_conv2d_path_and_its_conv_are_different_layers_to_explain():
    # "2" is a cnnlab Conv2D: its activation map; "2.conv" the convolution's own output, before
    # the ReLU, which gives another map (it used to be read as "2")
    import cnnlab
    from cnnlab.layers import Conv2D, Dense, Flatten

    torch.manual_seed(0)
    model = cnnlab.Sequential([Conv2D(4, 3, padding="same", activation="relu"),
                               Conv2D(6, 3, activation="relu"), Flatten(), Dense(3)],
                              input_shape=(1, 8, 8))
    x = torch.randn(1, 1, 8, 8)
    wrapper, conv = grad_cam(model, x, "1", 0), grad_cam(model, x, "1.conv", 0)
    acts = {}
    model[1].conv.register_forward_hook(lambda m, i, o: acts.setdefault("pre", o.detach()))
    model(x)
    assert not torch.allclose(wrapper.cam, conv.cam)
    assert torch.equal(conv.cam, grad_cam(model, x, "1.conv", 0).cam)  # deterministic
    assert (acts["pre"] < 0).any()  # the conv output has what the ReLU removes


def test_the_default_layer_is_the_last_convolution_with_more_than_one_pixel():
    from cnnlab import zoo
    from cnnlab.explain.gradcam import gradcam_layer

    torch.manual_seed(0)
    lenet = zoo.create("lenet5", num_classes=10, in_channels=1, input_size=(32, 32)).eval()
    x = torch.rand(1, 1, 32, 32)
    assert gradcam_layer(lenet, x) == "features.2"  # C5 (features.4) is 120x1x1
    cam = grad_cam(lenet, x).cam
    assert torch.equal(cam, grad_cam(lenet, x, "features.2").cam)
    assert cam.max() == 1.0 and cam.min() < 1.0  # a map with places, not one flat value
