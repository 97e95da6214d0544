"""The image-GAN family's generator upsamplers (sim/training/image_gan.py)."""

from __future__ import annotations

import numpy as np
import pytest

from mambah.errors import ConfigError

pytest.importorskip("keras")


def test_subpixel_generator_places_each_readout_in_its_2x2_block() -> None:
    """With the read-out kernel K[a, b, c] = 1 only at (a, b) = (0, 1), channel 0, every
    nonzero pixel is at an even row and odd column, and pixel (2i, 2j + 1) equals the
    (ReLU of the) feature map's channel 0 at half-resolution cell (i, j)."""
    import keras

    from sim.training.image_gan import build_image_generator

    g = build_image_generator(3, 5, (6, 8), 1, channels=(4, 2), upsampler="subpixel")
    assert g.output_shape == (None, 6 * 8 + 1)
    layer = g.get_layer("gen_image")
    kernel, bias = layer.get_weights()
    assert kernel.shape == (2, 2, 1, 2)  # (rows, columns, out channels, in channels)
    kernel[:] = 0.0
    kernel[0, 1, 0, 0] = 1.0
    layer.set_weights([kernel, np.zeros_like(bias)])
    x = np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32)
    img = np.asarray(g(x))[:, :48].reshape(16, 6, 8)
    features = np.asarray(keras.Model(g.input, g.get_layer("gen_act_conv_0").output)(x))  # (16, 3, 4, 2)
    expected = np.zeros_like(img)
    expected[:, 0::2, 1::2] = np.maximum(features[..., 0], 0.0)
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(img, expected, rtol=1e-5, atol=1e-6)


def test_generator_upsamplers_and_bad_name() -> None:
    from sim.training.image_gan import build_image_generator

    cheap = build_image_generator(8, 16, (30, 30), 1, channels=(16, 8), upsampler="subpixel")
    full = build_image_generator(8, 16, (30, 30), 1, channels=(16, 8), upsampler="transpose")
    assert cheap.output_shape == full.output_shape == (None, 901)
    assert {type(la).__name__ for la in cheap.layers} <= {"InputLayer", "Dense", "LeakyReLU", "Reshape", "Conv2D",
                                                          "Conv2DTranspose", "Flatten", "Concatenate"}
    with pytest.raises(ConfigError, match="unknown upsampler 'pixelshuffle'"):
        build_image_generator(8, 16, (30, 30), 1, upsampler="pixelshuffle")


def test_calorimeter_trainers_make_a_loadable_shower_model(tmp_path) -> None:
    """The three calorimeter trainers on 384 reference showers (1-2 epochs): saved as
    ``my{,_energy,_hadron_energy}.keras`` they load as one shower model that draws
    non-negative 30 x 30 matrices, hadron totals included; oversampling is recorded."""
    from sim.core.io import save_model
    from sim.detector.calorimeter import generate_showers, load_shower_model
    from sim.reference.ecal import shower_sample
    from sim.training.recipes.calorimeter import train_calorimeter

    s = shower_sample(384, np.random.default_rng(9), mix=((22, 0.3), (11, 0.3), (211, 0.3), (13, 0.1)))
    shape, energy, hadron = train_calorimeter(s, epochs=1, energy_epochs=2, hadron_epochs=2, seed=3,
                                              oversample_hadrons=2)
    assert shape.provenance["oversample_hadrons"] == 2
    assert shape.provenance["generator"] == {"channels": [16, 16], "upsampler": "subpixel"}
    for trained, suffix in ((shape, ""), (energy, "_energy"), (hadron, "_hadron_energy")):
        save_model(trained, tmp_path / f"my{suffix}.keras")
    model = load_shower_model(str(tmp_path / "my.keras"))
    m = generate_showers(model, s["pid"][:64], s["energy"][:64], s["x"][:64], s["y"][:64], s["tx"][:64],
                         s["ty"][:64], np.random.default_rng(1))
    assert m.shape == (64, 30, 30) and np.all(m >= 0) and np.all(np.isfinite(m))
    with pytest.raises(ConfigError, match="oversample_hadrons=0"):
        train_calorimeter(s, only="shape", oversample_hadrons=0)
    with pytest.raises(ConfigError, match="only='pid'"):
        train_calorimeter(s, only="pid")
