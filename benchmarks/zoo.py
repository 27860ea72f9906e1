"""The model zoo the coverage benchmark and the zoo tests share: every
architecture built offline, from constructors (no presets, nothing downloads).

* `APPLICATIONS`: `keras.applications` models and the input size each is built
  at (`weights=None`);
* `keras_cv_backbones()`: keras_cv backbones;
* `HUB`: keras_hub backbones and task models, their arguments following the
  configurations of the named presets, scaled down where noted; each builder
  takes `shape` (64x64 by default, or `ANY`, `(None, None, 3)`, for any image
  size);
* `randomize`: random weights and BatchNorm statistics, so that a wrongly
  sliced or zeroed statistic shows in the outputs.

tests/test_zoo.py imports it as `benchmarks.zoo`; the benchmark scripts as
their sibling `zoo`.
"""

from __future__ import annotations

import keras
import numpy as np

A = keras.applications
#: keras.applications models and the input size each is timed and checked at.
APPLICATIONS = {
    "VGG16": (A.VGG16, 64),
    "ResNet50": (A.ResNet50, 64),
    "MobileNetV2": (A.MobileNetV2, 64),
    "MobileNetV3Small": (A.MobileNetV3Small, 64),
    "DenseNet121": (A.DenseNet121, 64),
    "EfficientNetB0": (A.EfficientNetB0, 64),
    "InceptionV3": (A.InceptionV3, 75),
    "Xception": (A.Xception, 71),
    "NASNetMobile": (A.NASNetMobile, 64),
    "ConvNeXtTiny": (A.ConvNeXtTiny, 64),
}


def randomize(model: keras.Model, seed: int = 0) -> keras.Model:
    """Give every weight random values in place (positive where it must be).

    Fresh BatchNorm layers are nearly the identity; random statistics make sure a
    wrongly sliced mean or variance shows up in the outputs.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        _randomize_layer(layer, rng)
    return model


def _randomize_layer(layer, rng):
    if isinstance(layer, keras.Model):
        for inner in layer.layers:
            _randomize_layer(inner, rng)
        return
    values = []
    for v in layer.weights:
        shape = tuple(v.shape)
        if "variance" in v.name:
            values.append(rng.uniform(0.5, 1.5, shape))
        elif v.dtype.startswith("int"):
            values.append(np.asarray(v))
        elif len(shape) >= 2:
            # Keep activations O(1) through deep nets: std 1 / sqrt(fan-in).
            fan_in = max(int(np.prod(shape[:-1])), 1)
            values.append(rng.normal(0, 1 / np.sqrt(fan_in), shape))
        else:
            values.append(rng.normal(0, 0.5, shape))
    if values:
        layer.set_weights(
            [np.asarray(x, dtype=v.dtype) for x, v in zip(values, layer.weights)]
        )


def keras_cv_backbones():
    import keras_cv

    m = keras_cv.models
    small = (64, 64, 3)
    return {
        "ResNet18": lambda: m.ResNetBackbone(
            stackwise_filters=[64, 128, 256, 512],
            stackwise_blocks=[2, 2, 2, 2],
            stackwise_strides=[1, 2, 2, 2],
            block_type="basic_block",
            include_rescaling=True,
            input_shape=small,
        ),
        "ResNet50V2": lambda: m.ResNetV2Backbone(
            stackwise_filters=[64, 128, 256, 512],
            stackwise_blocks=[3, 4, 6, 3],
            stackwise_strides=[1, 2, 2, 2],
            include_rescaling=True,
            input_shape=small,
        ),
        "MobileNetV3Small": lambda: m.MobileNetV3Backbone(
            stackwise_expansion=[1, 4.5, 88 / 24, 4, 6, 6, 3, 3, 6, 6, 6],
            stackwise_filters=[16, 24, 24, 40, 40, 40, 48, 48, 96, 96, 96],
            stackwise_kernel_size=[3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 5],
            stackwise_stride=[2, 2, 1, 2, 1, 1, 1, 1, 2, 1, 1],
            stackwise_se_ratio=[0.25, None, None] + [0.25] * 8,
            stackwise_activation=["relu"] * 3 + ["hard_swish"] * 8,
            include_rescaling=True,
            input_shape=small,
        ),
        "YOLOV8": lambda: m.YOLOV8Backbone(
            stackwise_channels=[32, 64, 128, 256],
            stackwise_depth=[1, 2, 2, 1],
            include_rescaling=True,
            input_shape=small,
        ),
        "EfficientNetLiteB0": lambda: m.EfficientNetLiteBackbone(
            width_coefficient=1.0,
            depth_coefficient=1.0,
            stackwise_kernel_sizes=[3, 3, 5, 3, 5, 5, 3],
            stackwise_num_repeats=[1, 2, 2, 3, 3, 4, 1],
            stackwise_input_filters=[32, 16, 24, 40, 80, 112, 192],
            stackwise_output_filters=[16, 24, 40, 80, 112, 192, 320],
            stackwise_expansion_ratios=[1, 6, 6, 6, 6, 6, 6],
            stackwise_strides=[1, 2, 2, 2, 1, 2, 1],
            include_rescaling=True,
            input_shape=small,
        ),
        "DenseNet121": lambda: m.DenseNetBackbone(
            stackwise_num_repeats=[6, 12, 24, 16],
            include_rescaling=True,
            input_shape=small,
        ),
    }


SMALL = (64, 64, 3)
ANY = (None, None, 3)


def hub_resnet(shape=SMALL, blocks=(2, 2, 2, 2), **kwargs):
    import keras_hub

    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=list(blocks),
        stackwise_num_strides=[1, 2, 2, 2],
        image_shape=shape,
        **kwargs,
    )


def hub_resnet18(shape=SMALL):
    return hub_resnet(shape, block_type="basic_block")


def hub_resnet50v2(shape=SMALL):
    return hub_resnet(
        shape, (3, 4, 6, 3), block_type="bottleneck_block", use_pre_activation=True
    )


def hub_mobilenetv3_small(shape=SMALL):
    """timm's mobilenetv3_small_100 (keras_hub/src/utils/timm/convert_mobilenet.py)."""
    import keras_hub

    return keras_hub.models.MobileNetBackbone(
        stackwise_expansion=[[72, 88], [96, 240, 240], [120, 144], [288, 576, 576]],
        stackwise_num_blocks=[2, 3, 2, 3],
        stackwise_num_filters=[[24, 24], [40, 40, 40], [48, 48], [96, 96, 96]],
        stackwise_kernel_size=[[3, 3], [5, 5, 5], [5, 5], [5, 5, 5]],
        stackwise_num_strides=[[2, 1], [2, 1, 1], [1, 1], [2, 1, 1]],
        stackwise_se_ratio=[[None, None], [0.25] * 3, [0.25] * 2, [0.25] * 3],
        stackwise_activation=[
            ["relu", "relu"],
            ["hard_swish"] * 3,
            ["hard_swish"] * 2,
            ["hard_swish"] * 3,
        ],
        stackwise_padding=[[1, 1], [2, 2, 2], [2, 2], [2, 2, 2]],
        output_num_filters=1024,
        input_num_filters=16,
        depthwise_filters=16,
        depthwise_stride=2,
        depthwise_residual=False,
        squeeze_and_excite=0.5,
        last_layer_filter=576,
        input_activation="hard_swish",
        output_activation="hard_swish",
        image_shape=shape,
    )


def hub_efficientnet_b0(shape=SMALL):
    """timm's efficientnet_b0 (keras_hub/src/utils/timm/convert_efficientnet.py)."""
    import keras_hub

    return keras_hub.models.EfficientNetBackbone(
        stackwise_width_coefficients=[1.0] * 7,
        stackwise_depth_coefficients=[1.0] * 7,
        stackwise_squeeze_and_excite_ratios=[0.25] * 7,
        stackwise_kernel_sizes=[3, 3, 5, 3, 5, 5, 3],
        stackwise_num_repeats=[1, 2, 2, 3, 3, 4, 1],
        stackwise_input_filters=[32, 16, 24, 40, 80, 112, 192],
        stackwise_output_filters=[16, 24, 40, 80, 112, 192, 320],
        stackwise_expansion_ratios=[1, 6, 6, 6, 6, 6, 6],
        stackwise_strides=[1, 2, 2, 2, 1, 2, 1],
        stackwise_block_types=["v1"] * 7,
        min_depth=None,
        include_stem_padding=True,
        use_depth_divisor_as_min_depth=True,
        cap_round_filter_decrease=True,
        stem_conv_padding="valid",
        batch_norm_momentum=0.9,
        batch_norm_epsilon=1e-5,
        dropout=0,
        projection_activation=None,
        input_shape=shape,
    )


def hub_efficientnetv2_rw_t(shape=SMALL):
    """timm's efficientnetv2_rw_t: CBA, fused and unfused MBConv blocks, which
    keras_hub builds as layers of their own (convert_efficientnet.py)."""
    import keras_hub

    return keras_hub.models.EfficientNetBackbone(
        stackwise_width_coefficients=[0.8] * 6,
        stackwise_depth_coefficients=[0.9] * 6,
        stackwise_kernel_sizes=[3] * 6,
        stackwise_num_repeats=[2, 4, 4, 6, 9, 15],
        stackwise_input_filters=[24, 24, 48, 64, 128, 160],
        stackwise_output_filters=[24, 48, 64, 128, 160, 256],
        stackwise_expansion_ratios=[1, 4, 4, 4, 6, 6],
        stackwise_strides=[1, 2, 2, 2, 1, 2],
        stackwise_squeeze_and_excite_ratios=[0, 0, 0, 0.25, 0.25, 0.25],
        stackwise_block_types=["cba"] + ["fused"] * 2 + ["unfused"] * 3,
        stackwise_force_input_filters=[0] * 6,
        stackwise_nores_option=[False] * 6,
        activation="silu",
        min_depth=None,
        include_stem_padding=True,
        use_depth_divisor_as_min_depth=True,
        cap_round_filter_decrease=True,
        stem_conv_padding="valid",
        dropout=0,
        input_shape=shape,
    )


def hub_cspdarknet53(shape=SMALL):
    """timm's cspdarknet53 (keras_hub/src/utils/timm/convert_cspnet.py)."""
    import keras_hub

    return keras_hub.models.CSPNetBackbone(
        stem_filters=32,
        stem_kernel_size=3,
        stem_strides=1,
        stackwise_depth=[1, 2, 8, 8, 4],
        stackwise_num_filters=[64, 128, 256, 512, 1024],
        bottle_ratio=(0.5, 1.0),
        block_ratio=(1.0, 0.5),
        expand_ratio=(2.0, 1.0),
        stage_type="csp",
        block_type="dark_block",
        stackwise_strides=[2, 2, 2, 2, 2],
        down_growth=True,
        stem_pooling=None,
        stem_padding="same",
        avg_down=False,
        cross_linear=False,
        groups=1,
        image_shape=shape,
    )


def hub_densenet121(shape=SMALL):
    import keras_hub

    return keras_hub.models.DenseNetBackbone(
        stackwise_num_repeats=[6, 12, 24, 16],
        compression_ratio=0.5,
        growth_rate=32,
        image_shape=shape,
    )


def hub_vgg16(shape=SMALL):
    import keras_hub

    return keras_hub.models.VGGBackbone(
        stackwise_num_repeats=[2, 2, 3, 3, 3],
        stackwise_num_filters=[64, 128, 256, 512, 512],
        image_shape=shape,
    )


def hub_mit_b0(shape=SMALL):
    """MiT-B0, the SegFormer encoder. Needs a fixed image size (it computes
    `image_size / stride` in Python while building)."""
    import keras_hub

    return keras_hub.models.MiTBackbone(
        layerwise_depths=[2, 2, 2, 2],
        num_layers=4,
        hidden_dims=[32, 64, 160, 256],
        layerwise_num_heads=[1, 2, 5, 8],
        layerwise_sr_ratios=[8, 4, 2, 1],
        max_drop_path_rate=0.1,
        layerwise_patch_sizes=[7, 3, 3, 3],
        layerwise_strides=[4, 2, 2, 2],
        image_shape=shape,
    )


def hub_xception(shape=(71, 71, 3)):
    import keras_hub

    middle = [[728, 728, 728]] * 8
    return keras_hub.models.XceptionBackbone(
        stackwise_conv_filters=[[32, 64], [128, 128], [256, 256], [728, 728]]
        + middle
        + [[728, 1024], [1536, 2048]],
        stackwise_pooling=[False, True, True, True] + [False] * 8 + [True, False],
        image_shape=shape,
    )


def hub_hgnetv2_b0(shape=SMALL, out_features=None):
    """timm's hgnetv2_b0 (keras_hub/src/utils/timm/convert_hgnetv2.py)."""
    import keras_hub

    return keras_hub.models.HGNetV2Backbone(
        stem_channels=[3, 16, 16],
        stackwise_stage_filters=[
            [16, 16, 64, 1, 3, 3],
            [64, 32, 256, 1, 3, 3],
            [256, 64, 512, 2, 3, 5],
            [512, 128, 1024, 1, 3, 5],
        ],
        apply_downsample=[False, True, True, True],
        use_lightweight_conv_block=[False, False, True, True],
        depths=[1, 1, 2, 1],
        hidden_sizes=[64, 256, 512, 1024],
        embedding_size=16,
        use_learnable_affine_block=True,
        hidden_act="relu",
        image_shape=shape,
        out_features=out_features,
    )


def hub_deeplabv3plus(shape=SMALL):
    """DeepLabV3+ on the ResNet18 backbone above, 3 classes."""
    import keras_hub

    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=hub_resnet18(shape),
        spatial_pyramid_pooling_key="P5",
        upsampling_size=8,
        dilation_rates=[6, 12, 18],
        low_level_feature_key="P2",
        projection_filters=48,
        image_shape=shape,
    )
    return keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=3)


def hub_segformer_b0(shape=SMALL):
    import keras_hub

    backbone = keras_hub.models.SegFormerBackbone(
        image_encoder=hub_mit_b0(shape), projection_filters=64
    )
    return keras_hub.models.SegFormerImageSegmenter(backbone=backbone, num_classes=3)


def hub_retinanet(shape=SMALL):
    """RetinaNet (FPN P3-P5) on the ResNet18 backbone above, 3 classes."""
    import keras_hub

    backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=hub_resnet18(shape),
        min_level=3,
        max_level=5,
        use_p5=False,
        image_shape=shape,
    )
    return keras_hub.models.RetinaNetObjectDetector(
        backbone=backbone, num_classes=3, pre_logits_num_conv_layers=2
    )


def hub_basnet(shape=SMALL):
    """BASNet on a ResNet18 encoder (BASNet wants the encoder's shape open)."""
    import keras_hub

    backbone = keras_hub.models.BASNetBackbone(
        image_encoder=hub_resnet18(ANY), num_classes=1, image_shape=shape
    )
    return keras_hub.models.BASNetImageSegmenter(backbone=backbone)


def hub_dfine(shape=SMALL):
    """A small D-FINE detector on HGNetV2-B0 (the DFineBackbone docstring's
    config, narrowed), 3 classes, 20 queries."""
    import keras_hub

    backbone = keras_hub.models.DFineBackbone(
        backbone=hub_hgnetv2_b0(shape, out_features=["stage3", "stage4"]),
        decoder_in_channels=[64, 64],
        encoder_hidden_dim=64,
        num_denoising=0,
        num_labels=3,
        hidden_dim=64,
        learn_initial_query=False,
        num_queries=20,
        anchor_image_size=tuple(d or 64 for d in shape[:2]),
        feat_strides=[16, 32],
        num_feature_levels=2,
        encoder_in_channels=[512, 1024],
        encode_proj_layers=[1],
        num_attention_heads=4,
        encoder_ffn_dim=128,
        num_encoder_layers=1,
        hidden_expansion=0.34,
        depth_multiplier=0.5,
        eval_idx=-1,
        num_decoder_layers=2,
        decoder_attention_heads=4,
        decoder_ffn_dim=128,
        decoder_n_points=[3, 3],
        lqe_hidden_dim=16,
        num_lqe_layers=2,
        out_features=["stage3", "stage4"],
        image_shape=shape,
        seed=0,
    )
    return keras_hub.models.DFineObjectDetector(backbone=backbone, num_classes=3)


def hub_depth_anything(shape=(224, 224, 3)):
    """Depth Anything on a 4-layer DINOv2 (the DepthAnythingBackbone docstring)."""
    import keras_hub

    encoder = keras_hub.models.DINOV2Backbone(
        patch_size=14,
        num_layers=4,
        hidden_dim=32,
        num_heads=2,
        intermediate_dim=128,
        image_shape=shape,
        position_embedding_shape=(518, 518),
    )
    backbone = keras_hub.models.DepthAnythingBackbone(
        image_encoder=encoder,
        reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_dims=[16, 32, 64, 128],
        fusion_hidden_dim=32,
        head_hidden_dim=16,
        head_in_index=-1,
        feature_keys=["stage1", "stage2", "stage3", "stage4"],
    )
    return keras_hub.models.DepthAnythingDepthEstimator(
        backbone=backbone, depth_estimation_type="relative"
    )


HUB = {
    "ResNet18": hub_resnet18,
    "ResNet50V2": hub_resnet50v2,
    "MobileNetV3Small": hub_mobilenetv3_small,
    "EfficientNetB0": hub_efficientnet_b0,
    "EfficientNetV2-T": hub_efficientnetv2_rw_t,
    "CSPDarkNet53": hub_cspdarknet53,
    "DenseNet121": hub_densenet121,
    "VGG16": hub_vgg16,
    "Xception": hub_xception,
    "HGNetV2-B0": hub_hgnetv2_b0,
    "MiT-B0": hub_mit_b0,
    "DeepLabV3Plus": hub_deeplabv3plus,
    "SegFormer-B0": hub_segformer_b0,
    "RetinaNet": hub_retinanet,
    "BASNet": hub_basnet,
    "D-FINE": hub_dfine,
    "DepthAnything": hub_depth_anything,
}
#: keras_hub models also run with `image_shape=(None, None, 3)`, fed 64x64.
HUB_ANY_SIZE = ["ResNet18", "MobileNetV3Small", "EfficientNetB0", "CSPDarkNet53"]
