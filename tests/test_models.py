import pytest
import torch

import headstart
from headstart import InputShapeError, UnknownLayerError, UnknownModelError, WeightsError


def test_vgg16_with_top_matches_seed_parameter_count():
    model = headstart.create_model("vgg16", weights=None)
    s = model.summary(print_fn=None)
    assert s.total == 138_357_544 and s.trainable == 138_357_544 and s.non_trainable == 0
    names = [r[0] for r in s.rows]
    assert names[:4] == ["input_1", "block1_conv1", "block1_conv2", "block1_pool"]
    assert names[-5:] == ["block5_pool", "flatten", "fc1", "fc2", "predictions"]
    rows = {r[0]: r for r in s.rows}
    assert rows["block1_conv1"][2:] == ("(None, 224, 224, 64)", 1792)
    assert rows["flatten"][2] == "(None, 25088)"
    assert rows["fc1"][2:] == ("(None, 4096)", 102_764_544)
    assert rows["fc2"][2:] == ("(None, 4096)", 16_781_312)
    assert rows["predictions"][2:] == ("(None, 1000)", 4_097_000)
    text = str(s)
    assert "Total params: 138,357,544" in text and "Non-trainable params: 0" in text


def test_vgg16_no_top_300px_with_seed_head_matches_seed_count():
    model = headstart.create_model("vgg16", weights=None, include_top=False, input_shape=(300, 300, 3),
                                   head="flatten,dense:1024:relu", classes=10)
    s = model.summary(print_fn=None)
    assert s.total == 57_193_290
    rows = {r[0]: r for r in s.rows}
    assert rows["block5_pool"][2] == "(None, 9, 9, 512)"
    assert rows["flatten"][2] == "(None, 41472)"
    assert rows["dense"][2:] == ("(None, 1024)", 42_468_352)
    assert rows["predictions"][2:] == ("(None, 10)", 10_250)
    assert model(torch.zeros(2, 3, 300, 300)).shape == (2, 10)


def test_freezing_by_keras_layer_name_changes_trainable_count():
    model = headstart.create_model("vgg16", weights=None, include_top=False, input_shape=(64, 64, 3))
    for name in ("block1_conv1", "block1_conv2"):
        model.get_layer(name).trainable = False
    s = model.summary(print_fn=None)
    assert s.non_trainable == 1792 + 36928
    assert not model.get_layer("block1_conv1").trainable and model.get_layer("block2_conv1").trainable
    with pytest.raises(UnknownLayerError, match="block1_conv1"):
        model.get_layer("block1_conv9")


@pytest.mark.parametrize("arch", ["test_resnet", "test_efficientnet", "test_convnext"])
@pytest.mark.parametrize("pooling,size", [(None, (64, 64)), ("avg", (64, 64)), ("max", (96, 64))])
def test_no_top_shapes(arch, pooling, size):
    m = headstart.create_model(arch, weights=None, include_top=False, pooling=pooling, input_shape=(*size, 3))
    out = m(torch.zeros(2, 3, *size))
    timm_feats = m.backbone.forward_features(torch.zeros(2, 3, *size))
    if pooling is None:
        assert out.shape == timm_feats.shape and out.ndim == 4
    else:
        assert out.shape == (2, timm_feats.shape[1])
        expected = timm_feats.mean((2, 3)) if pooling == "avg" else timm_feats.amax((2, 3))
        torch.testing.assert_close(out, expected)


def test_include_top_random_weights_classes():
    m = headstart.create_model("test_resnet", weights=None, classes=7)
    assert m(torch.zeros(1, 3, 64, 64)).shape == (1, 7)
    assert len(m.class_names) == 7


def test_input_shape_640x480_and_pooling():
    m = headstart.create_model("lite0", include_top=False, pooling="avg", input_shape=(480, 640, 3))
    assert m.input_size == (480, 640)
    assert m(torch.zeros(1, 3, 480, 640)).shape == (1, 1280)


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(input_shape=(16, 16, 3)), InputShapeError, "at least 32"),
    (dict(input_shape=(300, 300)), InputShapeError, r"\(224, 224, 3\) only"),
    (dict(input_shape=(64, 64, 1)), InputShapeError, "Keras order"),
    (dict(classes=10), WeightsError, "classes must be 1000"),
    (dict(pooling="avg"), headstart.HeadstartError, "include_top=False"),
])
def test_bad_arguments_are_explained(kwargs, err, match):
    with pytest.raises(err, match=match):
        headstart.create_model("vgg16", **kwargs)


def test_inception_minimum_size():
    with pytest.raises(InputShapeError, match="at least 75"):
        headstart.create_model("inception_v3", weights=None, include_top=False, input_shape=(64, 64, 3))


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownModelError, match="Did you mean: .*vgg16"):
        headstart.create_model("vgg17")


def test_head_needs_a_vector():
    with pytest.raises(headstart.HeadstartError, match="flatten"):
        headstart.create_model("test_resnet", weights=None, include_top=False, head="dense:8")
    m = headstart.create_model("test_resnet", weights=None, include_top=False, head="avg,dropout:0.2,dense:8:relu",
                               classes=3)
    assert m(torch.zeros(2, 3, 64, 64)).shape == (2, 3)
    assert [n for n, _ in m.head.named_children()] == ["global_average_pooling2d", "dropout", "dense",
                                                       "predictions"]


def test_frozen_batchnorm_keeps_statistics_in_train_mode():
    m = headstart.create_model("test_efficientnet", weights=None, include_top=False, pooling="avg")
    for p in m.backbone.parameters():
        p.requires_grad_(False)
    before = {k: v.clone() for k, v in m.backbone.state_dict().items()}
    m.train()
    m(torch.randn(4, 3, 64, 64) * 3 + 1)
    after = m.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # An unfrozen model in train mode does update its statistics (so the test above can fail).
    m2 = headstart.create_model("test_efficientnet", weights=None, include_top=False, pooling="avg").train()
    before2 = {k: v.clone() for k, v in m2.backbone.state_dict().items()}
    m2(torch.randn(4, 3, 64, 64) * 3 + 1)
    assert any(not torch.equal(before2[k], v) for k, v in m2.backbone.state_dict().items())


def test_list_models_and_aliases():
    names = {s.name for s in headstart.list_models()}
    assert {"vgg16", "vgg19", "resnet50", "inception_v3", "efficientnet_lite0"} <= names
    assert headstart.create_model("lite0", weights=None).config.name == "efficientnet_lite0"
