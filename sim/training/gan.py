"""Conditional GANs for resolution and PID response, with signed sample weights.

Three algorithms (``algorithm=``):

* ``"cramer"``: Cramér GAN (Bellemare et al. 2017, arXiv:1705.10743, Algorithm 1),
  the model of LHCb's Lamarr PID GANs.  The critic is an embedding ``h`` of
  ``(conditions, targets)`` of width ``n_critic_features``; with two independent
  generated samples ``g, g'`` for the same conditions ``c`` and real ``r``:

  - generator loss (energy distance): ``||h(r) - h(g)|| + ||h(r) - h(g')|| - ||h(g) - h(g')||``
  - critic surrogate ``f(x) = ||h(x) - h(g')|| - ||h(x)||``; the critic maximises
    ``f(r) - f(g)`` with a gradient penalty ``lambda (||grad_y f(y_hat)|| - 1)^2`` at
    ``y_hat = eps r + (1 - eps) g``.

* ``"wgan-gp"``: Wasserstein GAN with gradient penalty (Gulrajani et al. 2017):
  critic loss ``D(g) - D(r) + lambda GP``, generator loss ``-D(g)``.
* ``"bce"``: the original non-saturating GAN with a logistic discriminator.

Weights: every per-event term is multiplied by the event's weight (normalised to mean
1 over the sample), in both the critic and the generator losses, so sWeights, including
negative ones, subtract the background in expectation.  The gradient penalty is an
unweighted mean (it is a regulariser; signed weights there could reward violating it).
The target ``QuantileGaussian`` is fitted with the weights, negative weights clipped to
zero (see :class:`~sim.training.preprocessing.QuantileGaussian`); the conditions one is
fitted unweighted, so it covers every condition the sample holds.

Gradient penalties are taken with respect to the targets only; the conditions are the
same for real and generated points.  By default the penalty is one-sided,
``max(0, ||grad|| - 1)^2`` (Petzka et al. 2018, arXiv:1709.08894), for both Cramér and
WGAN-GP; ``penalty="two-sided"`` gives the papers' ``(||grad|| - 1)^2``.  Why: with a
one-dimensional target the two-sided penalty is a barrier against the critic flipping
the sign of its slope (it must pass through zero gradient), so once the generator
overshoots the data the critic cannot follow and the generator runs away.  Measured on
``y ~ N(2c, 0.5)`` (3000 rows, 3 seeds x 3 learning-rate/critic-step settings, a few
hundred steps): two-sided, 8 of 9 trainings ran away (bin means off by 1-4); one-sided,
all 9 within 0.4 of the truth.

Checkpoints: with ``checkpoint_dir`` every finished epoch is written to
``checkpoint_dir/epoch-NNNN/`` (``generator.weights.h5``, ``critic.weights.h5``,
``optimizers.npz`` holding the optimizer variables, ``state.json`` with epoch, numpy
bit-generator state, optimizer configs and iteration counts, preprocessing, history and
the training configuration); ``checkpoint_dir/latest.json`` points to it and is
replaced atomically, then the previous epoch directory is removed.  A NaN/inf loss
raises :class:`~mambah.errors.TrainingError` before anything of that epoch is written.

Reproducibility: all noise and shuffling come from one ``numpy.random.Generator``
seeded with ``seed`` (its state is checkpointed); initial weights come from
``keras.utils.set_random_seed(seed)``.  On CPU, same seed → identical weights, and a
resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mambah.errors import ConfigError, DataError, TrainingError
from sim.training.io import TrainedModel, provenance_defaults
from sim.training.preprocessing import (
    ConditionalQuantileGaussian,
    QuantileGaussian,
    preprocessor_from_dict,
    transform,
)

__all__ = ("ALGORITHMS", "LR_SCHEDULES", "train_gan")

log = logging.getLogger(__name__)

ALGORITHMS = ("cramer", "wgan-gp", "bce")
LR_SCHEDULES = ("constant", "cosine")
_DEFAULT_CRITIC_STEPS = {"cramer": 2, "wgan-gp": 5, "bce": 1}
_CHECKPOINT_FORMAT = "mambah-gan-checkpoint"
_EPS_NORM = 1e-12


def _check_inputs(
    conditions: np.ndarray, targets: np.ndarray, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = np.asarray(conditions, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    c = c[:, None] if c.ndim == 1 else c
    t = t[:, None] if t.ndim == 1 else t
    if c.ndim != 2 or t.ndim != 2 or c.shape[0] != t.shape[0]:
        raise DataError(
            f"train_gan: conditions {c.shape} and targets {t.shape} must be (n, c) and (n, t)"
        )
    for name, arr in (("conditions", c), ("targets", t)):
        bad = ~np.isfinite(arr)
        if bad.any():
            raise DataError(
                f"train_gan: NaN or inf in {name} column(s) {sorted(set(np.nonzero(bad)[1].tolist()))}"
            )
    w = np.ones(c.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (c.shape[0],):
        raise DataError(f"train_gan: weights shape {w.shape}, expected ({c.shape[0]},)")
    if not np.all(np.isfinite(w)):
        raise DataError("train_gan: weights hold NaN or inf")
    if w.sum() <= 0:
        raise DataError(f"train_gan: sum of weights {w.sum():.4g} is not positive")
    return c, t, w * (w.size / w.sum())


def _norm(tf: Any, a: Any) -> Any:
    """Euclidean norm over the last axis, differentiable at 0."""
    return tf.sqrt(tf.reduce_sum(tf.square(a), axis=-1) + _EPS_NORM)


def _make_step(
    algorithm: str, generator: Any, critic: Any, opt_g: Any, opt_d: Any, critic_steps: int,
    gp_lambda: float, one_sided: bool,
) -> Any:
    """Build the compiled training step: ``critic_steps`` critic updates, one generator update."""
    import tensorflow as tf

    def fake(c: Any, z: Any) -> Any:
        return tf.concat([c, generator(tf.concat([c, z], axis=1), training=True)], axis=1)

    def penalty(score: Any, c: Any, y: Any, y_gen: Any, eps: Any) -> Any:
        """Gradient penalty at ``y_hat = eps y + (1 - eps) y_gen`` (targets only)."""
        y_hat = eps * y + (1.0 - eps) * y_gen
        with tf.GradientTape() as tape:
            tape.watch(y_hat)
            s = tf.reduce_sum(score(tf.concat([c, y_hat], axis=1)))
        grad = tape.gradient(s, y_hat)
        excess = _norm(tf, grad) - 1.0
        return tf.reduce_mean(tf.square(tf.nn.relu(excess) if one_sided else excess))

    def critic_loss(c: Any, y: Any, w: Any, z1: Any, z2: Any, eps: Any) -> Any:
        real = tf.concat([c, y], axis=1)
        g1, g2 = fake(c, z1), fake(c, z2)
        y_gen = g1[:, c.shape[1] :]
        if algorithm == "cramer":
            h_2 = critic(g2, training=True)

            def surrogate(x: Any) -> Any:
                h = critic(x, training=True)
                return _norm(tf, h - h_2) - _norm(tf, h)

            gain = tf.reduce_mean(w * (surrogate(real) - surrogate(g1)))
            return -gain + gp_lambda * penalty(surrogate, c, y, y_gen, eps)
        d_real = critic(real, training=True)[:, 0]
        d_fake = critic(g1, training=True)[:, 0]
        if algorithm == "wgan-gp":
            score = lambda x: critic(x, training=True)[:, 0]  # noqa: E731
            return tf.reduce_mean(w * (d_fake - d_real)) + gp_lambda * penalty(score, c, y, y_gen, eps)
        return tf.reduce_mean(w * (tf.nn.softplus(-d_real) + tf.nn.softplus(d_fake)))

    def generator_loss(c: Any, y: Any, w: Any, z1: Any, z2: Any) -> Any:
        g1 = fake(c, z1)
        if algorithm == "cramer":
            h_r = critic(tf.concat([c, y], axis=1), training=True)
            h_1, h_2 = critic(g1, training=True), critic(fake(c, z2), training=True)
            energy = _norm(tf, h_r - h_1) + _norm(tf, h_r - h_2) - _norm(tf, h_1 - h_2)
            return tf.reduce_mean(w * energy)
        d_fake = critic(g1, training=True)[:, 0]
        if algorithm == "wgan-gp":
            return -tf.reduce_mean(w * d_fake)
        return tf.reduce_mean(w * tf.nn.softplus(-d_fake))

    @tf.function(reduce_retracing=True, autograph=False)
    def step(c: Any, y: Any, w: Any, z_d: Any, eps: Any, z_g: Any) -> tuple[Any, Any]:
        d_loss = tf.constant(0.0)
        for k in range(critic_steps):
            with tf.GradientTape() as tape:
                d_loss = critic_loss(c, y, w, z_d[k, 0], z_d[k, 1], eps[k])
            grads = tape.gradient(d_loss, critic.trainable_variables)
            opt_d.apply_gradients(zip(grads, critic.trainable_variables))
        with tf.GradientTape() as tape:
            g_loss = generator_loss(c, y, w, z_g[0], z_g[1])
        grads = tape.gradient(g_loss, generator.trainable_variables)
        opt_g.apply_gradients(zip(grads, generator.trainable_variables))
        return d_loss, g_loss

    return step


# --------------------------------------------------------------------------- checkpoints


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _latest(checkpoint_dir: Path) -> dict[str, Any] | None:
    pointer = checkpoint_dir / "latest.json"
    if not pointer.is_file():
        return None
    try:
        latest = json.loads(pointer.read_text())
        state = json.loads((checkpoint_dir / latest["dir"] / "state.json").read_text())
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as err:
        raise ConfigError(f"checkpoint {checkpoint_dir} is unreadable: {err}") from err
    if state.get("format") != _CHECKPOINT_FORMAT:
        raise ConfigError(f"{checkpoint_dir} does not hold a {_CHECKPOINT_FORMAT!r}")
    state["path"] = str(checkpoint_dir / latest["dir"])
    return state


def _save_checkpoint(
    checkpoint_dir: Path, epoch: int, generator: Any, critic: Any, optimizers: Mapping[str, Any],
    state: Mapping[str, Any],
) -> None:
    name = f"epoch-{epoch:04d}"
    tmp = checkpoint_dir / f"{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    generator.save_weights(tmp / "generator.weights.h5")
    critic.save_weights(tmp / "critic.weights.h5")
    arrays = {
        f"{key}_{i}": np.asarray(v.numpy())
        for key, opt in optimizers.items()
        for i, v in enumerate(opt.variables)
    }
    np.savez(tmp / "optimizers.npz", **arrays)
    opt_state = {
        key: {"config": opt.get_config(), "iterations": int(opt.iterations.numpy()),
              "n_variables": len(opt.variables)}
        for key, opt in optimizers.items()
    }
    _write_json(tmp / "state.json", {**state, "epoch": epoch, "optimizers": opt_state})
    final = checkpoint_dir / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    previous = _latest(checkpoint_dir)
    _write_json(checkpoint_dir / "latest.json", {"epoch": epoch, "dir": name})
    if previous is not None and Path(previous["path"]) != final:
        shutil.rmtree(previous["path"], ignore_errors=True)
    log.debug("checkpoint written: %s", final)


def _load_checkpoint(
    state: Mapping[str, Any], generator: Any, critic: Any, optimizers: Mapping[str, Any]
) -> None:
    path = Path(state["path"])
    try:
        generator.load_weights(path / "generator.weights.h5")
        critic.load_weights(path / "critic.weights.h5")
        with np.load(path / "optimizers.npz") as arrays:
            for key, opt in optimizers.items():
                for i, v in enumerate(opt.variables):
                    v.assign(arrays[f"{key}_{i}"])
    except (OSError, KeyError, ValueError) as err:
        raise ConfigError(f"cannot restore checkpoint {path}: {err}") from err


# --------------------------------------------------------------------------- training


def train_gan(
    conditions: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    algorithm: str = "cramer",
    n_noise: int = 16,
    epochs: int = 10,
    batch_size: int = 512,
    critic_steps: int | None = None,
    learning_rate: float = 1e-3,
    lr_schedule: str = "constant",
    ema: float | None = None,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    hidden_generator: Sequence[int] = (64, 64, 64),
    hidden_critic: Sequence[int] = (64, 64, 64),
    n_critic_features: int = 32,
    gp_lambda: float = 10.0,
    penalty: str = "one-sided",
    n_quantiles: int = 1000,
    target_bins: int | None = None,
    condition_names: Sequence[str] | None = None,
    target_names: Sequence[str] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> TrainedModel:
    """Train a conditional GAN ``targets ~ G(conditions, noise)``.

    Args:
        conditions: ``(n, c)`` raw conditions (e.g. p [MeV], eta, nTracks).
        targets: ``(n, t)`` raw targets (e.g. resolutions [mm, MeV], PID variables).
        weights: ``(n,)`` per-event weights (sWeights may be negative), or ``None``.
        algorithm: ``"cramer"``, ``"wgan-gp"`` or ``"bce"``.
        n_noise: dimension of the generator's standard-normal noise.
        epochs: total number of epochs (a resumed run continues up to this number).
        batch_size: rows per batch (only full batches are used, each epoch reshuffled).
        critic_steps: critic updates per generator update (default: cramer 2,
            wgan-gp 5, bce 1); each batch gives ``critic_steps`` critic updates and one
            generator update.
        learning_rate: Adam learning rate of both networks (``beta_1=0.5, beta_2=0.9``).
        lr_schedule: ``"constant"`` or ``"cosine"``: cosine decay of both learning rates
            from ``learning_rate`` to 5 % of it over ``epochs x batches`` optimizer steps
            (``keras.optimizers.schedules.CosineDecay``), so the last epochs refine
            instead of oscillating around the equilibrium.  The critic takes
            ``critic_steps`` steps per batch, so its rate reaches the 5 % floor after
            ``1 / critic_steps`` of the training and stays there (the shipped models
            were trained so).
        ema: if given (e.g. 0.999), the returned generator holds the exponential moving
            average of its weights with this momentum (Keras' optimizer ``use_ema``;
            Yazıcı et al. 2019, arXiv:1806.04498), which smooths the step-to-step
            oscillation of adversarial training.  ``None``: the last weights.
        seed: seed of the weights initialisation, shuffling and noise.
        checkpoint_dir: write a checkpoint here after each epoch (see module doc).
        resume: continue from the latest checkpoint in ``checkpoint_dir`` (starts fresh
            when there is none).  Without ``resume`` an existing checkpoint is refused.
        progress: show a tqdm progress bar over epochs.
        hidden_generator, hidden_critic: hidden layer widths.
        n_critic_features: width of the Cramér critic embedding ``h``.
        gp_lambda: gradient-penalty strength (cramer, wgan-gp).
        penalty: ``"one-sided"`` (default) or ``"two-sided"`` gradient penalty (see
            module doc).
        n_quantiles: quantile points of the ``QuantileGaussian`` preprocessing.
        target_bins: if given, the targets' preprocessing follows the first condition
            (:class:`~sim.training.preprocessing.ConditionalQuantileGaussian` with this
            many bins of ``n_quantiles // 2`` points), so generated values stay inside
            the range the targets take at that condition (e.g. below a Cherenkov
            threshold).
        condition_names, target_names: column names (default ``c0..``, ``t0..``).
        provenance: extra provenance entries (e.g. ``data_file``).

    Returns:
        :class:`TrainedModel` of kind ``"generator"``; ``history`` holds per-epoch
        mean ``critic_loss`` and ``generator_loss``.

    Raises:
        ConfigError: unknown algorithm or settings, or a checkpoint that does not
            match the settings (or exists while ``resume=False``).
        DataError: malformed arrays, NaN/inf, non-positive weight sum.
        TrainingError: a loss became NaN/inf; the last good checkpoint is kept.
    """
    import keras

    from sim.training.models import build_critic, build_generator

    if algorithm not in ALGORITHMS:
        raise ConfigError(f"unknown GAN algorithm {algorithm!r}; known: {list(ALGORITHMS)}")
    if lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"unknown learning-rate schedule {lr_schedule!r}; known: {list(LR_SCHEDULES)}")
    if ema is not None and not 0.0 < float(ema) < 1.0:
        raise ConfigError(f"train_gan: ema={ema!r} must be a momentum in (0, 1) or None")
    if penalty not in ("one-sided", "two-sided"):
        raise ConfigError(f"unknown gradient penalty {penalty!r}; known: ['one-sided', 'two-sided']")
    critic_steps = _DEFAULT_CRITIC_STEPS[algorithm] if critic_steps is None else int(critic_steps)
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("critic_steps", critic_steps),
                        ("n_noise", n_noise)):
        if int(value) != value or value < 1:
            raise ConfigError(f"train_gan: {name}={value!r} must be an integer >= 1")
    c_raw, t_raw, w = _check_inputs(conditions, targets, weights)
    n, n_cond = c_raw.shape
    n_targ = t_raw.shape[1]
    cond_names = tuple(condition_names) if condition_names else tuple(f"c{i}" for i in range(n_cond))
    targ_names = tuple(target_names) if target_names else tuple(f"t{i}" for i in range(n_targ))
    if len(cond_names) != n_cond or len(targ_names) != n_targ:
        raise ConfigError(
            f"train_gan: {len(cond_names)} condition / {len(targ_names)} target names "
            f"for {n_cond} / {n_targ} columns"
        )
    config = {
        "algorithm": algorithm, "n_noise": int(n_noise), "batch_size": int(batch_size),
        "critic_steps": critic_steps, "learning_rate": float(learning_rate), "lr_schedule": lr_schedule,
        "ema": None if ema is None else float(ema),
        # the cosine schedule spans all epochs, so a resumed run must keep their number
        "schedule_epochs": int(epochs) if lr_schedule == "cosine" else None, "seed": int(seed),
        "hidden_generator": [int(h) for h in hidden_generator],
        "hidden_critic": [int(h) for h in hidden_critic],
        "n_critic_features": int(n_critic_features), "gp_lambda": float(gp_lambda), "penalty": penalty,
        "target_bins": None if target_bins is None else int(target_bins),
        "n_rows": int(n), "conditions": list(cond_names), "targets": list(targ_names),
    }

    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    state = _latest(ckpt) if ckpt is not None else None
    if state is not None and not resume:
        raise ConfigError(
            f"checkpoint directory {ckpt} already holds epoch {state['epoch']}; "
            "pass resume=True to continue or choose another checkpoint_dir"
        )
    if state is not None:
        changed = {k: (state["config"].get(k), v) for k, v in config.items() if state["config"].get(k) != v}
        if changed:
            raise ConfigError(f"cannot resume {ckpt}: settings differ (checkpoint, now): {changed}")
        prep_c = preprocessor_from_dict(state["preprocessing"]["conditions"])
        prep_t = preprocessor_from_dict(state["preprocessing"]["targets"])
    else:
        prep_c = QuantileGaussian(n_quantiles).fit(c_raw)
        if target_bins is None:
            prep_t = QuantileGaussian(n_quantiles).fit(t_raw, weights=w if weights is not None else None)
        elif n_cond == 0:
            raise ConfigError("train_gan: target_bins needs a condition for the targets' preprocessing to follow")
        else:
            prep_t = ConditionalQuantileGaussian(max(n_quantiles // 2, 2), int(target_bins)).fit(
                t_raw, weights=w if weights is not None else None, conditions=c_raw)
    c = prep_c.transform(c_raw).astype(np.float32)
    t = transform(prep_t, t_raw, c_raw).astype(np.float32)
    w32 = w.astype(np.float32)

    keras.utils.set_random_seed(seed)
    generator = build_generator(n_cond, n_noise, n_targ, hidden_generator)
    n_out = n_critic_features if algorithm == "cramer" else 1
    critic = build_critic(n_cond, n_targ, hidden_critic, n_out)
    bs = min(int(batch_size), n)
    n_batches = n // bs

    def rate() -> Any:  # one schedule object per optimizer, counted in that optimizer's steps
        if lr_schedule == "cosine":
            return keras.optimizers.schedules.CosineDecay(learning_rate, int(epochs) * n_batches, alpha=0.05)
        return learning_rate

    ema_args = {} if ema is None else {"use_ema": True, "ema_momentum": float(ema)}
    optimizers = {
        "generator": keras.optimizers.Adam(rate(), beta_1=0.5, beta_2=0.9, **ema_args),
        "critic": keras.optimizers.Adam(rate(), beta_1=0.5, beta_2=0.9),
    }
    optimizers["generator"].build(generator.trainable_variables)
    optimizers["critic"].build(critic.trainable_variables)
    rng = np.random.default_rng(seed)
    history: dict[str, list[float]] = {"critic_loss": [], "generator_loss": []}
    start = 0
    if state is not None:
        _load_checkpoint(state, generator, critic, optimizers)
        rng.bit_generator.state = state["rng_state"]
        history = {k: list(v) for k, v in state["history"].items()}
        start = int(state["epoch"])
        log.info("resuming %s GAN from %s at epoch %d", algorithm, state["path"], start)

    step = _make_step(algorithm, generator, critic, optimizers["generator"], optimizers["critic"],
                      critic_steps, gp_lambda, penalty == "one-sided")

    from tqdm.auto import tqdm

    epochs_bar = tqdm(range(start, int(epochs)), disable=not progress, desc=f"{algorithm} GAN",
                      initial=start, total=int(epochs))
    for epoch in epochs_bar:
        order = rng.permutation(n)
        losses = []
        for b in range(n_batches):
            idx = order[b * bs : (b + 1) * bs]
            z_d = rng.standard_normal((critic_steps, 2, bs, n_noise), dtype=np.float32)
            eps = rng.random((critic_steps, bs, 1), dtype=np.float32)
            z_g = rng.standard_normal((2, bs, n_noise), dtype=np.float32)
            losses.append(step(c[idx], t[idx], w32[idx], z_d, eps, z_g))
        d_loss, g_loss = np.mean(np.asarray(losses, dtype=np.float64), axis=0)
        if not (np.isfinite(d_loss) and np.isfinite(g_loss)):
            kept = f"last good checkpoint kept in {ckpt} (epoch {epoch})" if ckpt and epoch else "no checkpoint"
            raise TrainingError(
                f"{algorithm} GAN diverged in epoch {epoch + 1}: critic loss {d_loss}, "
                f"generator loss {g_loss} (lower learning_rate={learning_rate}?); {kept}"
            )
        history["critic_loss"].append(float(d_loss))
        history["generator_loss"].append(float(g_loss))
        epochs_bar.set_postfix(critic=f"{d_loss:.4f}", generator=f"{g_loss:.4f}")
        log.debug("epoch %d: critic %.5f generator %.5f", epoch + 1, d_loss, g_loss)
        if ckpt is not None:
            _save_checkpoint(ckpt, epoch + 1, generator, critic, optimizers, {
                "format": _CHECKPOINT_FORMAT,
                "config": config,
                "rng_state": rng.bit_generator.state,
                "preprocessing": {"conditions": prep_c.to_dict(), "targets": prep_t.to_dict()},
                "history": history,
            })

    if ema is not None:  # the averaged weights become the generator's
        optimizers["generator"].finalize_variable_values(generator.trainable_variables)
    prov = {
        **provenance_defaults(), "data_file": None, "epochs": int(epochs),
        **{k: v for k, v in config.items() if k not in ("conditions", "targets")},
        "weighted": weights is not None,
        **(dict(provenance) if provenance else {}),
    }
    return TrainedModel(
        model=generator,
        kind="generator",
        input_names=cond_names,
        output_names=targ_names,
        input_preprocessor=prep_c,
        output_preprocessor=prep_t,
        n_noise=int(n_noise),
        provenance=prov,
        history=history,
    )
