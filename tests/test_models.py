import pytest
import torch

from codistill.models import build_model, model_names
from codistill.models.layers import MapSize

NUM_CLASSES = 7
SMALL_AND_CIFAR = [(1, 8), (3, 32)]


@pytest.mark.parametrize("in_channels,image_size", SMALL_AND_CIFAR)
@pytest.mark.parametrize("name", model_names())
def test_every_model_follows_the_peer_contract(name, in_channels, image_size):
    torch.manual_seed(0)
    model = build_model(name, NUM_CLASSES, in_channels, image_size)
    x = torch.randn(2, in_channels, image_size, image_size)

    output = model(x)

    assert output.logits.shape == (2, NUM_CLASSES)
    assert 3 <= len(model.stages) == len(output.features) <= 4
    assert [f.shape[1:] for f in output.features] == model.feature_shapes(in_channels, image_size)
    assert model.training  # feature_shapes restores the mode it found
    assert output.embedding.shape == (2, model.classifier.in_features)
    for feature in output.features:
        assert feature.dim() in (2, 4)
        if feature.dim() == 4:  # downsampling never takes a map under 2 px
            assert min(feature.shape[2:]) >= 2
    (output.logits.logsumexp(dim=1).mean() + output.features[0].pow(2).mean()).backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name}: {parameter_name} got no gradient"
        assert torch.isfinite(parameter.grad).all(), f"{name}: {parameter_name} has a non-finite gradient"


@pytest.mark.parametrize("name,published_millions", [
    ("resnet20", 0.27), ("resnet56", 0.86), ("resnet110", 1.7), ("resnet32x4", 7.4),
    ("wrn_40_2", 2.2), ("densenet40_12", 0.19), ("densenet100_12", 0.8), ("mobilenetv2_x0_5", 0.81),
])
def test_parameter_counts_match_the_published_cifar100_models(name, published_millions):
    model = build_model(name, num_classes=100, in_channels=3, image_size=32)
    count = sum(p.numel() for p in model.parameters())
    assert count == pytest.approx(published_millions * 1e6, rel=0.10)


def test_cifar_resnet_downsamples_as_published_and_small_inputs_keep_2px():
    model = build_model("resnet20", 10, 3, 32)
    assert model.feature_shapes(3, 32) == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    small = build_model("resnet20", 10, 1, 8)
    assert small.feature_shapes(1, 8) == [(16, 8, 8), (32, 4, 4), (64, 2, 2)]


def test_vgg_skips_the_pooling_that_would_collapse_an_8px_map():
    model = build_model("vgg8", 10, 1, 8)
    assert [tuple(s) for s in model.feature_shapes(1, 8)] == [(128, 4, 4), (256, 2, 2), (512, 2, 2), (512, 2, 2)]


def test_map_size_halves_only_while_the_map_stays_wide_enough():
    size = MapSize(8)
    assert [size.stride() for _ in range(4)] == [2, 2, 1, 1]
    assert size.size == 2
    assert MapSize(16).stride(min_size=16) == 1
    assert MapSize(32).stride(min_size=16) == 2
    assert MapSize(3).pool() == []


def test_mlp_features_are_vectors():
    model = build_model("mlp", 10, 1, 8)
    assert model.feature_shapes(1, 8) == [(512,), (256,), (128,)]


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(KeyError, match=r"unknown model 'resnet21'.*resnet20"):
        build_model("resnet21", 10)


def test_registry_holds_every_required_architecture():
    required = {"resnet8", "resnet14", "resnet20", "resnet32", "resnet56", "resnet110", "resnet8x4", "resnet32x4",
                "vgg8", "vgg11", "vgg13", "vgg16", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2",
                "densenet40_12", "densenet100_12", "alexnet", "mobilenetv2", "mobilenetv2_x0_5",
                "shufflenetv2", "mlp", "cnn"}
    assert required <= set(model_names())
