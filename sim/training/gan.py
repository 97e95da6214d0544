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

import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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

__all__ = ("ALGORITHMS", "LR_SCHEDULES", "GANConfig", "train_gan")

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
    np.savez(tmp / "optimizers.npz", **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
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


@dataclass(frozen=True)
class GANConfig:
    """The settings of a GAN training (see :func:`train_gan` for their meaning); checked when built.

    ``record(...)`` is what a checkpoint stores and a resumed run must match.
    """

    algorithm: str = "cramer"
    n_noise: int = 16
    epochs: int = 10
    batch_size: int = 512
    critic_steps: int | None = None
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"
    ema: float | None = None
    seed: int = 0
    hidden_generator: tuple[int, ...] = (64, 64, 64)
    hidden_critic: tuple[int, ...] = (64, 64, 64)
    n_critic_features: int = 32
    gp_lambda: float = 10.0
    penalty: str = "one-sided"
    n_quantiles: int = 1000
    target_bins: int | None = None
    target_edges: tuple[float, ...] = ()
    target_differences: tuple[tuple[int, int], ...] = ()
    target_ties: str = "middle"

    def __post_init__(self) -> None:
        if self.target_ties not in ("middle", "spread"):
            raise ConfigError(f"train_gan: target_ties={self.target_ties!r}; known: ['middle', 'spread']")
        if self.target_ties == "spread" and self.target_bins is None:
            raise ConfigError("train_gan: target_ties='spread' is an option of the momentum-following target "
                              "transform; give target_bins too (e.g. target_bins=12)")
        object.__setattr__(self, "target_edges", tuple(float(e) for e in self.target_edges))
        object.__setattr__(self, "target_differences", tuple((int(j), int(b)) for j, b in self.target_differences))
        if (self.target_edges or self.target_differences) and self.target_bins is None:
            raise ConfigError("train_gan: target_edges and target_differences shape the momentum-following "
                              "target transform; give target_bins too (e.g. target_bins=12)")
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f"unknown GAN algorithm {self.algorithm!r}; known: {list(ALGORITHMS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"unknown learning-rate schedule {self.lr_schedule!r}; known: {list(LR_SCHEDULES)}")
        if self.ema is not None and not 0.0 < float(self.ema) < 1.0:
            raise ConfigError(f"train_gan: ema={self.ema!r} must be a momentum in (0, 1) or None")
        if self.penalty not in ("one-sided", "two-sided"):
            raise ConfigError(f"unknown gradient penalty {self.penalty!r}; known: ['one-sided', 'two-sided']")
        for name, value in (("epochs", self.epochs), ("batch_size", self.batch_size), ("critic_steps", self.steps),
                            ("n_noise", self.n_noise)):
            if int(value) != value or value < 1:
                raise ConfigError(f"train_gan: {name}={value!r} must be an integer >= 1")
        object.__setattr__(self, "hidden_generator", tuple(int(h) for h in self.hidden_generator))
        object.__setattr__(self, "hidden_critic", tuple(int(h) for h in self.hidden_critic))

    @property
    def steps(self) -> int:
        """Critic updates per generator update (the algorithm's default when not set)."""
        return _DEFAULT_CRITIC_STEPS[self.algorithm] if self.critic_steps is None else int(self.critic_steps)

    def record(self, n_rows: int, conditions: Sequence[str], targets: Sequence[str]) -> dict[str, Any]:
        """The settings a checkpoint records (and a resumed run must repeat)."""
        return {
            "algorithm": self.algorithm, "n_noise": int(self.n_noise), "batch_size": int(self.batch_size),
            "critic_steps": self.steps, "learning_rate": float(self.learning_rate), "lr_schedule": self.lr_schedule,
            "ema": None if self.ema is None else float(self.ema),
            # the cosine schedule spans all epochs, so a resumed run must keep their number
            "schedule_epochs": int(self.epochs) if self.lr_schedule == "cosine" else None, "seed": int(self.seed),
            "hidden_generator": list(self.hidden_generator), "hidden_critic": list(self.hidden_critic),
            "n_critic_features": int(self.n_critic_features), "gp_lambda": float(self.gp_lambda),
            "penalty": self.penalty, "target_bins": None if self.target_bins is None else int(self.target_bins),
            # None when unset, as in the checkpoints written before these options existed
            "target_edges": list(self.target_edges) or None,
            "target_differences": [list(jb) for jb in self.target_differences] or None,
            "target_ties": None if self.target_ties == "middle" else self.target_ties,
            "n_rows": int(n_rows), "conditions": list(conditions), "targets": list(targets),
        }


def train_gan(
    conditions: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    condition_names: Sequence[str] | None = None,
    target_names: Sequence[str] | None = None,
    provenance: Mapping[str, Any] | None = None,
    config: GANConfig | None = None,
    **settings: Any,
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
        target_edges: with ``target_bins``, raw values of the first condition (e.g. a
            Cherenkov threshold [MeV]) across which the transform does not interpolate
            (bins are equal-population within each segment), so a target that is
            exact in a whole segment (a point mass) is generated exactly there.
        target_differences: with ``target_bins``, ``(j, b)`` pairs: target ``j`` is
            learned as ``target_j - target_b`` and generated as that plus ``target_b``
            (e.g. RichDLLp - RichDLLK, exactly 0 where both hypotheses are below
            threshold); see :class:`~sim.training.preprocessing.ConditionalQuantileGaussian`.
        target_ties: with ``target_bins``, where a repeated target value (a point mass)
            goes in the model's space: ``"middle"`` (of its probability run, z = 0 for a
            value that fills a whole table) or ``"spread"`` (uniformly over the run, one
            draw per row from a generator seeded with ``(seed, 1)``), so the generator
            need not collapse its noise where the target is exact and stays smooth across
            the edge of the point mass; the inverse gives the exact value either way.
        condition_names, target_names: column names (default ``c0..``, ``t0..``).
        provenance: extra provenance entries (e.g. ``data_file``).
        config: the settings as a :class:`GANConfig`; ``settings`` (the keyword
            arguments above: algorithm, n_noise, epochs, ...) override its fields.

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

    try:
        cfg = dataclasses.replace(config or GANConfig(), **settings)
    except TypeError as err:
        raise ConfigError(f"train_gan: {err}; settings are the fields of GANConfig") from None
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
    record = cfg.record(n, cond_names, targ_names)
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    state = _resume_state(ckpt, resume, record)
    prep_c, prep_t = _preprocessors(cfg, state, c_raw, t_raw, w if weights is not None else None)
    c = prep_c.transform(c_raw).astype(np.float32)
    spread = np.random.default_rng([int(cfg.seed), 1]) if cfg.target_ties == "spread" else None
    t = transform(prep_t, t_raw, c_raw, spread).astype(np.float32)
    w32 = w.astype(np.float32)

    keras.utils.set_random_seed(cfg.seed)
    generator = build_generator(n_cond, cfg.n_noise, n_targ, cfg.hidden_generator)
    critic = build_critic(n_cond, n_targ, cfg.hidden_critic, cfg.n_critic_features if cfg.algorithm == "cramer" else 1)
    bs = min(int(cfg.batch_size), n)
    optimizers = _optimizers(keras, cfg, n // bs, generator, critic)
    rng = np.random.default_rng(cfg.seed)
    history: dict[str, list[float]] = {"critic_loss": [], "generator_loss": []}
    start = 0
    if state is not None:
        _load_checkpoint(state, generator, critic, optimizers)
        rng.bit_generator.state = state["rng_state"]
        history = {k: list(v) for k, v in state["history"].items()}
        start = int(state["epoch"])
        log.info("resuming %s GAN from %s at epoch %d", cfg.algorithm, state["path"], start)
    step = _make_step(cfg.algorithm, generator, critic, optimizers["generator"], optimizers["critic"],
                      cfg.steps, cfg.gp_lambda, cfg.penalty == "one-sided")
    checkpoint = None if ckpt is None else (ckpt, {"format": _CHECKPOINT_FORMAT, "config": record,
                                                   "preprocessing": {"conditions": prep_c.to_dict(),
                                                                     "targets": prep_t.to_dict()}})
    _run_epochs(cfg, step, (c, t, w32), rng, history, start, bs, generator, critic, optimizers, checkpoint, progress)
    if cfg.ema is not None:  # the averaged weights become the generator's
        optimizers["generator"].finalize_variable_values(generator.trainable_variables)
    prov = {
        **provenance_defaults(), "data_file": None, "epochs": int(cfg.epochs),
        **{k: v for k, v in record.items() if k not in ("conditions", "targets")},
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
        n_noise=int(cfg.n_noise),
        provenance=prov,
        history=history,
    )


def _resume_state(ckpt: Path | None, resume: bool, record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The checkpoint to continue from (checked against the settings), or ``None`` for a fresh start."""
    state = _latest(ckpt) if ckpt is not None else None
    if state is not None and not resume:
        raise ConfigError(
            f"checkpoint directory {ckpt} already holds epoch {state['epoch']}; "
            "pass resume=True to continue or choose another checkpoint_dir"
        )
    if state is not None:
        changed = {k: (state["config"].get(k), v) for k, v in record.items() if state["config"].get(k) != v}
        if changed:
            raise ConfigError(f"cannot resume {ckpt}: settings differ (checkpoint, now): {changed}")
    return state


def _preprocessors(
    cfg: GANConfig, state: Mapping[str, Any] | None, c_raw: np.ndarray, t_raw: np.ndarray, w: np.ndarray | None
) -> tuple[Any, Any]:
    """The conditions' and targets' preprocessing: from the checkpoint, or fitted on the data."""
    if state is not None:
        return (preprocessor_from_dict(state["preprocessing"]["conditions"]),
                preprocessor_from_dict(state["preprocessing"]["targets"]))
    prep_c = QuantileGaussian(cfg.n_quantiles).fit(c_raw)
    if cfg.target_bins is None:
        return prep_c, QuantileGaussian(cfg.n_quantiles).fit(t_raw, weights=w)
    if c_raw.shape[1] == 0:
        raise ConfigError("train_gan: target_bins needs a condition for the targets' preprocessing to follow")
    if any(max(jb) >= t_raw.shape[1] for jb in cfg.target_differences):
        raise ConfigError(f"train_gan: target_differences={[list(jb) for jb in cfg.target_differences]} name a "
                          f"column beyond the {t_raw.shape[1]} target(s)")
    try:
        prep_t = ConditionalQuantileGaussian(max(cfg.n_quantiles // 2, 2), int(cfg.target_bins),
                                             edges=cfg.target_edges, differences=cfg.target_differences)
    except DataError as err:
        raise ConfigError(f"train_gan: {err}") from None
    prep_t = prep_t.fit(t_raw, weights=w, conditions=c_raw)
    return prep_c, prep_t


def _optimizers(keras: Any, cfg: GANConfig, n_batches: int, generator: Any, critic: Any) -> dict[str, Any]:
    """Adam optimizers of both networks, with the learning-rate schedule and the generator's EMA."""

    def rate() -> Any:  # one schedule object per optimizer, counted in that optimizer's steps
        if cfg.lr_schedule == "cosine":
            return keras.optimizers.schedules.CosineDecay(cfg.learning_rate, int(cfg.epochs) * n_batches, alpha=0.05)
        return cfg.learning_rate

    ema_args = {} if cfg.ema is None else {"use_ema": True, "ema_momentum": float(cfg.ema)}
    optimizers = {
        "generator": keras.optimizers.Adam(rate(), beta_1=0.5, beta_2=0.9, **ema_args),
        "critic": keras.optimizers.Adam(rate(), beta_1=0.5, beta_2=0.9),
    }
    optimizers["generator"].build(generator.trainable_variables)
    optimizers["critic"].build(critic.trainable_variables)
    return optimizers


def _run_epochs(
    cfg: GANConfig,
    step: Any,
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
    rng: np.random.Generator,
    history: dict[str, list[float]],
    start: int,
    bs: int,
    generator: Any,
    critic: Any,
    optimizers: Mapping[str, Any],
    checkpoint: tuple[Path, dict[str, Any]] | None,
    progress: bool,
) -> None:
    """Epochs ``start .. cfg.epochs``: shuffled full batches, NaN guard, a checkpoint after each epoch."""
    from tqdm.auto import tqdm

    c, t, w32 = data
    n = c.shape[0]
    n_batches = n // bs
    n_noise, critic_steps = cfg.n_noise, cfg.steps
    epochs_bar = tqdm(range(start, int(cfg.epochs)), disable=not progress, desc=f"{cfg.algorithm} GAN",
                      initial=start, total=int(cfg.epochs))
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
            ckpt = checkpoint[0] if checkpoint else None
            kept = f"last good checkpoint kept in {ckpt} (epoch {epoch})" if ckpt and epoch else "no checkpoint"
            raise TrainingError(
                f"{cfg.algorithm} GAN diverged in epoch {epoch + 1}: critic loss {d_loss}, "
                f"generator loss {g_loss} (lower learning_rate={cfg.learning_rate}?); {kept}"
            )
        history["critic_loss"].append(float(d_loss))
        history["generator_loss"].append(float(g_loss))
        epochs_bar.set_postfix(critic=f"{d_loss:.4f}", generator=f"{g_loss:.4f}")
        log.debug("epoch %d: critic %.5f generator %.5f", epoch + 1, d_loss, g_loss)
        if checkpoint is not None:
            _save_checkpoint(checkpoint[0], epoch + 1, generator, critic, optimizers,
                             {**checkpoint[1], "rng_state": rng.bit_generator.state, "history": history})
