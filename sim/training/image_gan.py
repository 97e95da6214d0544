"""Convolutional conditional GANs for image-like detector responses (calorimeter showers).

A reusable family beside the MLP GANs of :mod:`sim.training.gan`, with the same losses
(``"wgan-gp"``: Gulrajani et al. 2017; ``"cramer"``: Bellemare et al. 2017,
arXiv:1705.10743, with the one-sided gradient penalty of Petzka et al. 2018,
arXiv:1709.08894, as in :mod:`sim.training.gan`), for targets that are an ``H x W``
image plus a few scalars:

* generator: ``concat(conditions, noise)`` (one flat input, so
  :meth:`~sim.core.io.TrainedModel.sample` applies it like any Mambah generator) →
  ``Dense`` → ``Reshape`` to ``(H/2, W/2, C)`` → an upsampler → a ReLU image (exact
  zeros possible) flattened, concatenated with linear scalar outputs:
  ``(n, H*W + n_scalars)``.  Upsamplers: ``"transpose"`` (``Conv2DTranspose``, stride 2,
  then ``Conv2D`` layers at full resolution) or ``"subpixel"`` (the ``Conv2D`` layers at
  half resolution, then a linear read-out of each half-resolution cell's features into its
  2 x 2 pixels: the sub-pixel convolution of Shi et al. 2016, arXiv:1609.05158, written
  as a ``Conv2DTranspose`` with kernel = stride = 2, a standard layer; 4-5x fewer CPU
  seconds per image at the same channels, as every convolution runs on a quarter of the
  pixels);
* critic: ``concat(conditions, image, scalars)`` (one flat input); the image part is cut
  out with ``Cropping1D`` and convolved (stride-2 ``Conv2D`` layers), then joined with
  the conditions and scalars in ``Dense`` layers.  Standard layers only: the archives
  load with ``safe_mode=True``;
* auxiliary regressor (trained jointly, as the LHCb ECAL GAN's auxiliary metric
  regressor and the BESIII/CEPC calorimeter GANs' parameter regressor): an MLP of the
  conditions predicting the mean and log-variance of image metrics
  (:func:`image_metrics`: barycentre, width, asymmetries), fitted to the real images by
  Gaussian likelihood at every step; the generator's loss adds ``aux_weight`` times the
  Gaussian negative log-likelihood of its own images' metrics under that prediction.

Pixels are learned in a log space, :class:`PixelTransform` ``f = log1p(v/eps)/log1p(1/eps)``
of non-negative pixel values ``v`` (e.g. energy fractions), so the critic sees the
shower core and its 1e-4 tails on one scale.

Reproducibility: noise and shuffling come from one ``numpy.random.Generator`` seeded
with ``seed``, initial weights from ``keras.utils.set_random_seed(seed)``.
TensorFlow/Keras are imported inside the functions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mambah.errors import ConfigError, DataError, TrainingError
from sim.core.pixels import PixelTransform
from sim.training.io import TrainedModel, provenance_defaults
from sim.training.preprocessing import Identity, QuantileGaussian

__all__ = (
    "IMAGE_ALGORITHMS",
    "METRICS",
    "UPSAMPLERS",
    "PixelTransform",
    "build_image_critic",
    "build_image_generator",
    "image_metrics",
    "train_image_gan",
)

log = logging.getLogger(__name__)

IMAGE_ALGORITHMS = ("wgan-gp", "cramer")
UPSAMPLERS = ("transpose", "subpixel")
"""Generator upsamplers of :func:`build_image_generator`."""
METRICS = ("bary_x", "bary_y", "width", "asym_x", "asym_y")
"""Names of :func:`image_metrics`' columns."""
_EPS_NORM = 1e-12


def image_metrics(images: Any, xp: Any = np) -> Any:
    """Barycentre, width and asymmetries of non-negative images, in pixel units.

    Coordinates are measured from the centre of pixel ``(H//2, W//2)``; row = y.

    Args:
        images: ``(n, H, W)`` non-negative pixel values (numpy or TensorFlow).
        xp: the array module: ``numpy`` or ``tensorflow.experimental.numpy``.

    Returns:
        ``(n, 5)``: :data:`METRICS` = barycentre x, y; RMS radius about the barycentre;
        ``(right - left)/total`` and ``(up - down)/total`` about the centre pixel's
        middle (the centre column/row split in halves).
    """
    h, w = int(images.shape[1]), int(images.shape[2])
    ys = xp.asarray(np.arange(h, dtype=np.float32) - h // 2)[None, :, None]
    xs = xp.asarray(np.arange(w, dtype=np.float32) - w // 2)[None, None, :]
    total = xp.sum(images, axis=(1, 2)) + 1e-12
    bx = xp.sum(images * xs, axis=(1, 2)) / total
    by = xp.sum(images * ys, axis=(1, 2)) / total
    r2 = (xs - bx[:, None, None]) ** 2 + (ys - by[:, None, None]) ** 2
    width = xp.sqrt(xp.sum(images * r2, axis=(1, 2)) / total + 1e-12)
    ax = xp.sum(images * xp.tanh(4.0 * xs), axis=(1, 2)) / total
    ay = xp.sum(images * xp.tanh(4.0 * ys), axis=(1, 2)) / total
    return xp.stack([bx, by, width, ax, ay], axis=1)


def _check_int(name: str, value: int, minimum: int = 1) -> int:
    if int(value) != value or value < minimum:
        raise ConfigError(f"{name}={value!r} must be an integer >= {minimum}")
    return int(value)


def build_image_generator(
    n_conditions: int,
    n_noise: int,
    shape: tuple[int, int] = (30, 30),
    n_scalars: int = 1,
    *,
    channels: Sequence[int] = (16, 8),
    hidden: int = 64,
    negative_slope: float = 0.1,
    upsampler: str = "transpose",
    name: str = "image_generator",
) -> Any:
    """Conditional convolutional generator ``(n, c + n_noise) → (n, H*W + n_scalars)``.

    Args:
        n_conditions: preprocessed condition features.
        n_noise: noise width.
        shape: image ``(H, W)``, both even.
        n_scalars: linear scalar outputs appended after the image (0 for none).
        channels: channels of the ``(H/2, W/2)`` map the dense layer makes (and of the
            ``Conv2DTranspose`` layer with ``"transpose"``), then of the ``Conv2D``
            layers after it; the image layer (a 1-channel ``Conv2D`` at full resolution,
            or the 2 x 2 sub-pixel read-out) has a ReLU.
        hidden: width of the first ``Dense`` layer.
        negative_slope: LeakyReLU slope.
        upsampler: ``"transpose"`` or ``"subpixel"`` (see the module docstring).
        name: model name.
    """
    import keras  # type: ignore[import-untyped]

    h, w = (_check_int("shape[0]", shape[0], 2), _check_int("shape[1]", shape[1], 2))
    if h % 2 or w % 2:
        raise ConfigError(f"build_image_generator: shape {shape} must be even in both axes")
    if not channels:
        raise ConfigError("build_image_generator: channels must list at least one width")
    if upsampler not in UPSAMPLERS:
        raise ConfigError(f"build_image_generator: unknown upsampler {upsampler!r}; known: {list(UPSAMPLERS)}")
    width_in = _check_int("n_conditions", n_conditions, 0) + _check_int("n_noise", n_noise)
    inputs = keras.Input(shape=(width_in,), name="conditions_noise")
    x = keras.layers.Dense(int(hidden), name="gen_dense_0")(inputs)
    x = keras.layers.LeakyReLU(negative_slope=negative_slope, name="gen_act_0")(x)
    c0 = _check_int("channels[0]", channels[0])
    y = keras.layers.Dense((h // 2) * (w // 2) * c0, name="gen_dense_1")(x)
    y = keras.layers.LeakyReLU(negative_slope=negative_slope, name="gen_act_1")(y)
    y = keras.layers.Reshape((h // 2, w // 2, c0), name="gen_reshape")(y)
    if upsampler == "transpose":
        y = keras.layers.Conv2DTranspose(c0, 4, strides=2, padding="same", name="gen_up")(y)
        y = keras.layers.LeakyReLU(negative_slope=negative_slope, name="gen_act_up")(y)
    for i, c in enumerate(channels[1:]):
        y = keras.layers.Conv2D(_check_int(f"channels[{i + 1}]", c), 3, padding="same", name=f"gen_conv_{i}")(y)
        y = keras.layers.LeakyReLU(negative_slope=negative_slope, name=f"gen_act_conv_{i}")(y)
    if upsampler == "transpose":
        y = keras.layers.Conv2D(1, 3, padding="same", activation="relu", name="gen_image")(y)
    else:  # kernel = stride = 2 ("same" pads nothing): pixel (2i + a, 2j + b) = relu(K[a, b] · features[i, j] + bias)
        y = keras.layers.Conv2DTranspose(1, 2, strides=2, padding="same", activation="relu", name="gen_image")(y)
    image = keras.layers.Flatten(name="gen_flat")(y)
    if int(n_scalars) == 0:
        return keras.Model(inputs, image, name=name)
    s = keras.layers.Dense(int(hidden), name="gen_scalar_dense")(x)
    s = keras.layers.LeakyReLU(negative_slope=negative_slope, name="gen_scalar_act")(s)
    s = keras.layers.Concatenate(name="gen_scalar_join")([s, inputs])
    s = keras.layers.Dense(_check_int("n_scalars", n_scalars), name="gen_scalars")(s)
    return keras.Model(inputs, keras.layers.Concatenate(name="targets")([image, s]), name=name)


def build_image_critic(
    n_conditions: int,
    shape: tuple[int, int] = (30, 30),
    n_scalars: int = 1,
    n_features_out: int = 1,
    *,
    channels: Sequence[int] = (8, 16),
    hidden: int = 64,
    negative_slope: float = 0.1,
    name: str = "image_critic",
) -> Any:
    """Critic ``(n, c + H*W + n_scalars) → (n, n_features_out)`` with a convolutional image branch."""
    import keras  # type: ignore[import-untyped]

    h, w = int(shape[0]), int(shape[1])
    n_c, n_s = _check_int("n_conditions", n_conditions, 0), _check_int("n_scalars", n_scalars, 0)
    width = n_c + h * w + n_s
    inputs = keras.Input(shape=(width,), name="conditions_targets")
    col = keras.layers.Reshape((width, 1), name="critic_column")(inputs)
    img = keras.layers.Cropping1D((n_c, n_s), name="critic_crop_image")(col)
    img = keras.layers.Reshape((h, w, 1), name="critic_image")(img)
    for i, c in enumerate(channels):
        img = keras.layers.Conv2D(_check_int(f"channels[{i}]", c), 3, strides=2 if i else 1,
                                  padding="same", name=f"critic_conv_{i}")(img)
        img = keras.layers.LeakyReLU(negative_slope=negative_slope, name=f"critic_act_conv_{i}")(img)
    img = keras.layers.Flatten(name="critic_flat")(img)
    parts = [img]
    if n_c:
        cond = keras.layers.Cropping1D((0, h * w + n_s), name="critic_crop_conditions")(col)
        parts.append(keras.layers.Flatten(name="critic_conditions")(cond))
    if n_s:
        sc = keras.layers.Cropping1D((n_c + h * w, 0), name="critic_crop_scalars")(col)
        parts.append(keras.layers.Flatten(name="critic_scalars")(sc))
    x = keras.layers.Concatenate(name="critic_join")(parts) if len(parts) > 1 else parts[0]
    for i in range(2):
        x = keras.layers.Dense(int(hidden), name=f"critic_dense_{i}")(x)
        x = keras.layers.LeakyReLU(negative_slope=negative_slope, name=f"critic_act_{i}")(x)
    out = keras.layers.Dense(_check_int("n_features_out", n_features_out), name="features")(x)
    return keras.Model(inputs, out, name=name)


def _build_regressor(n_conditions: int, n_metrics: int, hidden: int) -> Any:
    import keras  # type: ignore[import-untyped]

    inputs = keras.Input(shape=(n_conditions,), name="conditions")
    x = inputs
    for i in range(2):
        x = keras.layers.Dense(hidden, name=f"aux_dense_{i}")(x)
        x = keras.layers.LeakyReLU(negative_slope=0.1, name=f"aux_act_{i}")(x)
    return keras.Model(inputs, keras.layers.Dense(2 * n_metrics, name="aux_out")(x), name="aux_regressor")


def train_image_gan(
    conditions: np.ndarray,
    images: np.ndarray,
    scalars: np.ndarray | None = None,
    *,
    algorithm: str = "wgan-gp",
    pixel_transform: PixelTransform | None = None,
    n_noise: int = 16,
    epochs: int = 10,
    batch_size: int = 128,
    critic_steps: int = 2,
    learning_rate: float = 5e-4,
    ema: float | None = 0.99,
    aux_weight: float = 0.1,
    gp_lambda: float = 10.0,
    n_critic_features: int = 16,
    generator_channels: Sequence[int] = (16, 8),
    critic_channels: Sequence[int] = (8, 16),
    hidden: int = 64,
    upsampler: str = "transpose",
    seed: int = 0,
    progress: bool = False,
    condition_names: Sequence[str] | None = None,
    scalar_names: Sequence[str] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> TrainedModel:
    """Train a conditional convolutional GAN ``(image, scalars) ~ G(conditions, noise)``.

    Args:
        conditions: ``(n, c)`` raw conditions (QuantileGaussian-preprocessed inside).
        images: ``(n, H, W)`` non-negative pixels (e.g. energy fractions), learned in
            :class:`PixelTransform` space.
        scalars: ``(n, s)`` extra targets of order 1 (e.g. a standardised total), or ``None``.
        algorithm: ``"wgan-gp"`` or ``"cramer"``.
        pixel_transform: the pixel space (default ``PixelTransform()``).
        n_noise: noise width.
        epochs, batch_size: full batches only, reshuffled every epoch.
        critic_steps: critic updates per generator update.
        learning_rate: Adam (``beta_1=0.5, beta_2=0.9``) rate of all networks, cosine
            decay to 5 % over the training.
        ema: generator weight EMA momentum (Keras ``use_ema``), or ``None``.
        aux_weight: weight of the auxiliary-metric term in the generator loss (0: off).
        gp_lambda: gradient-penalty strength (one-sided).
        n_critic_features: Cramér critic embedding width.
        generator_channels, critic_channels, hidden: network sizes.
        upsampler: the generator's upsampler, ``"transpose"`` or ``"subpixel"``.
        seed: seed of weights, shuffling and noise.
        progress: tqdm bar over epochs.
        condition_names, scalar_names: names for the sidecar.
        provenance: extra provenance entries.

    Returns:
        A generator :class:`~sim.core.io.TrainedModel` whose raw outputs are the
        ``H*W`` transformed pixels then the scalars (``Identity`` output preprocessing);
        ``provenance["image"]`` records shape, pixel ``eps`` and scalar names.

    Raises:
        ConfigError: unknown algorithm or bad sizes.
        DataError: malformed arrays, NaN/inf, negative pixels.
        TrainingError: a loss became NaN/inf.
    """
    import keras  # type: ignore[import-untyped]
    import tensorflow as tf  # type: ignore[import-untyped]
    import tensorflow.experimental.numpy as tnp  # type: ignore[import-untyped]

    if algorithm not in IMAGE_ALGORITHMS:
        raise ConfigError(f"unknown image GAN algorithm {algorithm!r}; known: {list(IMAGE_ALGORITHMS)}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("critic_steps", critic_steps),
                        ("n_noise", n_noise)):
        _check_int(f"train_image_gan: {name}", value)
    pt = pixel_transform or PixelTransform()
    c_raw = np.asarray(conditions, dtype=np.float64)
    c_raw = c_raw[:, None] if c_raw.ndim == 1 else c_raw
    img = np.asarray(images, dtype=np.float64)
    if img.ndim != 3 or c_raw.ndim != 2 or img.shape[0] != c_raw.shape[0]:
        raise DataError(f"train_image_gan: conditions {c_raw.shape} and images {img.shape} must be (n, c) and (n, H, W)")
    n, h, w = img.shape
    s_raw = np.zeros((n, 0)) if scalars is None else np.asarray(scalars, dtype=np.float64).reshape(n, -1)
    for what, arr in (("conditions", c_raw), ("images", img), ("scalars", s_raw)):
        if not np.all(np.isfinite(arr)):
            raise DataError(f"train_image_gan: NaN or inf in {what}")
    if np.any(img < 0):
        raise DataError("train_image_gan: images hold negative pixels; expected values >= 0")
    n_c, n_s = c_raw.shape[1], s_raw.shape[1]
    cond_names = tuple(condition_names) if condition_names else tuple(f"c{i}" for i in range(n_c))
    sc_names = tuple(scalar_names) if scalar_names else tuple(f"s{i}" for i in range(n_s))
    if len(cond_names) != n_c or len(sc_names) != n_s:
        raise ConfigError(f"train_image_gan: {len(cond_names)}/{len(sc_names)} names for {n_c} conditions / {n_s} scalars")

    prep_c = QuantileGaussian(1000).fit(c_raw)
    c = prep_c.transform(c_raw).astype(np.float32)
    targets = np.concatenate([pt.forward(img).reshape(n, h * w), s_raw], axis=1).astype(np.float32)
    real_metrics = image_metrics(img.astype(np.float32)).astype(np.float32)
    m_mean, m_std = real_metrics.mean(axis=0), real_metrics.std(axis=0) + 1e-6

    keras.utils.set_random_seed(seed)
    generator = build_image_generator(n_c, n_noise, (h, w), n_s, channels=generator_channels, hidden=hidden,
                                      upsampler=upsampler)
    n_out = int(n_critic_features) if algorithm == "cramer" else 1
    critic = build_image_critic(n_c, (h, w), n_s, n_out, channels=critic_channels, hidden=hidden)
    regressor = _build_regressor(n_c, len(METRICS), hidden)
    bs = min(int(batch_size), n)
    n_batches = n // bs

    def rate() -> Any:
        return keras.optimizers.schedules.CosineDecay(learning_rate, int(epochs) * n_batches, alpha=0.05)

    ema_args = {} if ema is None else {"use_ema": True, "ema_momentum": float(ema)}
    opt_g = keras.optimizers.Adam(rate(), beta_1=0.5, beta_2=0.9, **ema_args)
    opt_d = keras.optimizers.Adam(rate(), beta_1=0.5, beta_2=0.9)
    opt_r = keras.optimizers.Adam(rate())
    norm = float(pt.norm)
    eps_px = float(pt.eps)
    mm, ms = tf.constant(m_mean), tf.constant(m_std)

    def l2(a: Any) -> Any:
        return tf.sqrt(tf.reduce_sum(tf.square(a), axis=-1) + _EPS_NORM)

    def fake(cb: Any, z: Any) -> Any:
        return generator(tf.concat([cb, z], axis=1), training=True)

    def metrics_of(t: Any) -> Any:
        pix = eps_px * (tf.exp(tf.nn.relu(t[:, : h * w]) * norm) - 1.0)
        return (image_metrics(tf.reshape(pix, (-1, h, w)), tnp) - mm) / ms

    def critic_loss(cb: Any, y: Any, z1: Any, z2: Any, e: Any) -> Any:
        g1, g2 = fake(cb, z1), fake(cb, z2)
        y_hat = e * y + (1.0 - e) * g1
        if algorithm == "cramer":
            h2 = critic(tf.concat([cb, g2], axis=1), training=True)

            def score(t: Any) -> Any:
                hh = critic(tf.concat([cb, t], axis=1), training=True)
                return l2(hh - h2) - l2(hh)
        else:
            def score(t: Any) -> Any:
                return critic(tf.concat([cb, t], axis=1), training=True)[:, 0]
        with tf.GradientTape() as tape:
            tape.watch(y_hat)
            s_hat = tf.reduce_sum(score(y_hat))
        grad = tape.gradient(s_hat, y_hat)
        gp = tf.reduce_mean(tf.square(tf.nn.relu(l2(grad) - 1.0)))
        return tf.reduce_mean(score(g1)) - tf.reduce_mean(score(y)) + gp_lambda * gp

    def generator_loss(cb: Any, y: Any, z1: Any, z2: Any) -> tuple[Any, Any]:
        g1 = fake(cb, z1)
        if algorithm == "cramer":
            h_r = critic(tf.concat([cb, y], axis=1), training=True)
            h_1 = critic(tf.concat([cb, g1], axis=1), training=True)
            h_2 = critic(tf.concat([cb, fake(cb, z2)], axis=1), training=True)
            adv = tf.reduce_mean(l2(h_r - h_1) + l2(h_r - h_2) - l2(h_1 - h_2))
        else:
            adv = -tf.reduce_mean(critic(tf.concat([cb, g1], axis=1), training=True)[:, 0])
        pred = regressor(cb, training=False)
        mu, logvar = pred[:, : len(METRICS)], pred[:, len(METRICS) :]
        nll = tf.reduce_mean(0.5 * (tf.square(metrics_of(g1) - mu) * tf.exp(-logvar) + logvar))
        return adv + aux_weight * nll, nll

    @tf.function(reduce_retracing=True)
    def step(cb: Any, y: Any, zd: Any, e: Any, zg: Any) -> tuple[Any, Any, Any]:
        d_loss = tf.constant(0.0)
        for k in range(int(critic_steps)):
            with tf.GradientTape() as tape:
                d_loss = critic_loss(cb, y, zd[k, 0], zd[k, 1], e[k])
            opt_d.apply_gradients(zip(tape.gradient(d_loss, critic.trainable_variables), critic.trainable_variables))
        target_m = metrics_of(y)
        with tf.GradientTape() as tape:
            pred = regressor(cb, training=True)
            mu, logvar = pred[:, : len(METRICS)], pred[:, len(METRICS) :]
            r_loss = tf.reduce_mean(0.5 * (tf.square(target_m - mu) * tf.exp(-logvar) + logvar))
        opt_r.apply_gradients(zip(tape.gradient(r_loss, regressor.trainable_variables), regressor.trainable_variables))
        with tf.GradientTape() as tape:
            g_loss, nll = generator_loss(cb, y, zg[0], zg[1])
        opt_g.apply_gradients(zip(tape.gradient(g_loss, generator.trainable_variables), generator.trainable_variables))
        return d_loss, g_loss, nll

    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    rng = np.random.default_rng(seed)
    history: dict[str, list[float]] = {"critic_loss": [], "generator_loss": [], "aux_nll": []}
    width_t = targets.shape[1]
    for epoch in tqdm(range(int(epochs)), disable=not progress, desc=f"{algorithm} image GAN"):
        order = rng.permutation(n)
        losses = []
        for b in range(n_batches):
            idx = order[b * bs : (b + 1) * bs]
            zd = rng.standard_normal((int(critic_steps), 2, bs, n_noise), dtype=np.float32)
            e = rng.random((int(critic_steps), bs, 1), dtype=np.float32)
            zg = rng.standard_normal((2, bs, n_noise), dtype=np.float32)
            losses.append([float(v) for v in step(c[idx], targets[idx], zd, e, zg)])
        d_l, g_l, a_l = np.mean(np.asarray(losses), axis=0)
        if not np.all(np.isfinite([d_l, g_l, a_l])):
            raise TrainingError(f"{algorithm} image GAN diverged in epoch {epoch + 1}: critic {d_l}, generator {g_l} "
                                f"(lower learning_rate={learning_rate}?)")
        history["critic_loss"].append(float(d_l))
        history["generator_loss"].append(float(g_l))
        history["aux_nll"].append(float(a_l))
        log.info("image GAN epoch %d: critic %.4f generator %.4f aux %.4f", epoch + 1, d_l, g_l, a_l)
    if ema is not None:
        opt_g.finalize_variable_values(generator.trainable_variables)
    del width_t
    prov = {
        **provenance_defaults(), "algorithm": algorithm, "epochs": int(epochs), "batch_size": bs,
        "critic_steps": int(critic_steps), "learning_rate": float(learning_rate), "lr_schedule": "cosine",
        "ema": ema, "aux_weight": float(aux_weight), "seed": int(seed), "n_rows": int(n),
        "generator": {"channels": [int(c) for c in generator_channels], "upsampler": upsampler},
        "image": {"shape": [h, w], "eps": pt.eps, "scalars": list(sc_names)},
        **(dict(provenance) if provenance else {}),
    }
    out_names = tuple(f"px_{i}" for i in range(h * w)) + sc_names
    return TrainedModel(
        model=generator, kind="generator", input_names=cond_names, output_names=out_names,
        input_preprocessor=prep_c, output_preprocessor=Identity(h * w + n_s), n_noise=int(n_noise),
        provenance=prov, history=history,
    )
