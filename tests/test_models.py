"""Model shapes and the Normalize layer."""
import pytest
import torch

from course_utils.models import MODELS, Normalize, build_model, count_parameters


@pytest.mark.parametrize("name", ["mnist_cnn", "mlp", "linear"])
def test_models_map_mnist_batches_to_ten_logits(name):
    torch.manual_seed(0)
    model = build_model(name)
    assert model(torch.rand(5, 1, 28, 28)).shape == (5, 10)
    assert model(torch.rand(1, 1, 28, 28)).shape == (1, 10)


def test_build_model_gives_fresh_models():
    a, b = build_model("linear"), build_model("linear")
    assert a is not b and a[1].weight.data_ptr() != b[1].weight.data_ptr()


def test_parameter_counts():
    """Oracle: weights + biases layer by layer, counted by hand."""
    assert count_parameters(build_model("linear")) == 784 * 10 + 10
    assert count_parameters(build_model("mlp")) == (784 * 200 + 200) + (200 * 200 + 200) + (200 * 10 + 10)
    convs = (1 * 32 + 32 * 32 + 32 * 64 + 64 * 64) * 9 + (32 + 32 + 64 + 64)
    assert count_parameters(build_model("mnist_cnn")) == convs + (7 * 7 * 64 * 100 + 100) + (100 * 10 + 10)


def test_build_model_unknown_name_raises():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet9000")
    assert "resnet9000" not in MODELS


def test_normalize_against_manual_computation():
    """Oracle: (x[c] − mean[c]) / std[c] per channel, computed pixel by pixel."""
    mean, std = [0.1, 0.5, 0.9], [0.2, 0.25, 0.5]
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    out = Normalize(mean, std)(x)
    for c in range(3):
        torch.testing.assert_close(out[:, c], (x[:, c] - mean[c]) / std[c])


def test_normalize_holds_buffers_not_parameters():
    layer = Normalize([0.1307], [0.3081])
    assert list(layer.parameters()) == []
    assert set(layer.state_dict()) == {"mean", "std"}


@pytest.mark.parametrize("std", [[0.0], [-1.0], [0.2, 0.0, 0.3]])
def test_normalize_rejects_non_positive_std(std):
    with pytest.raises(ValueError, match="std"):
        Normalize([0.0] * len(std), std)


def test_small_cnn_is_wongs_mnist_network():
    """conv 1→16 (4×4), conv 16→32 (4×4), fc 1568→100, fc 100→10, with biases."""
    expected = (16 * 16 + 16) + (32 * 16 * 16 + 32) + (32 * 7 * 7 * 100 + 100) + (100 * 10 + 10)
    assert count_parameters(build_model("small_cnn")) == expected
    assert build_model("small_cnn")(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_scaled_logits_mask_the_cross_entropy_gradient_but_not_the_margin():
    """Same predictions; a saturated softmax gives an exactly zero CE gradient; the margin's is untouched in sign."""
    import torch.nn.functional as F

    from course_utils.attacks import input_gradient, margin_loss
    from course_utils.models import ScaledLogits

    torch.manual_seed(0)
    base = build_model("linear")
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        y = base(x).argmax(1)  # labels the model gets right, so its softmax saturates on them
    masked = ScaledLogits(base, 1e4)
    assert torch.equal(masked(x).argmax(1), y)
    assert torch.count_nonzero(input_gradient(masked, x, y)) == 0
    assert torch.count_nonzero(input_gradient(base, x, y)) > 0
    g_masked, g_base = input_gradient(masked, x, y, margin_loss), input_gradient(base, x, y, margin_loss)
    assert torch.equal(g_masked.sign(), g_base.sign())
    assert F.cross_entropy(masked(x), y).item() == 0.0
    with pytest.raises(ValueError):
        ScaledLogits(base, 0.0)
