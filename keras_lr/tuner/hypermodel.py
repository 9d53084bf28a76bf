"""`LRBatchSizeHyperModel`: search the learning rate and batch size together.

The best learning rate moves with the batch size: for SGD it grows about
linearly with the batch (Goyal et al. 2017, arXiv:1706.02677), for Adam and
its variants about with its square root (Malladi et al. 2022,
arXiv:2205.10287). Searching the rate in *normalised* units,

    lr = lr_normalized * f(B / B_ref),   f(x) = x | sqrt(x) | 1,

lines the optimum up across batch sizes, so that what a trial learns about
the rate at one batch size carries over to the others and the search needs
fewer trials than one over the raw log-rate × batch size plane.
"""

from __future__ import annotations

import inspect
import math
import numbers
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import keras
import keras_tuner
import numpy as np

from keras_lr import _validate
from keras_lr.schedules import OneCycle, Warmup, WarmupCosineDecay
from keras_lr.tuner import _feasibility, _strategy

__all__ = ["LRBatchSizeHyperModel"]

_SCALINGS = ("linear", "sqrt", "none")
_OPTIMIZERS = ("sgd", "adam", "adamw")
_SCHEDULES = (None, "one_cycle", "warmup_cosine")
_DEFAULT_SCALING = {"sgd": "linear", "adam": "sqrt", "adamw": "sqrt"}
_AUTO_STRATEGY = "auto"
# The fixed hyperparameter that stores the auto range test's `lr_min`.
AUTO_LR_MIN = "auto_lr_min"
# Rate of a model compiled in `build` before its trial's rate is known.
_PLACEHOLDER_LR = 1e-3
# Set on models that `build` compiled itself (the user's was uncompiled).
_DEFAULT_COMPILE = "_keras_lr_default_compile"


def scale_factor(batch_size: int, reference_batch_size: int, scaling: str) -> float:
    """``f(B / B_ref)`` of the scaling rule.

    Example:

    >>> scale_factor(256, 64, "linear"), scale_factor(256, 64, "sqrt")
    (4.0, 2.0)
    """
    batch_size = _validate.check_int("batch_size", batch_size, minimum=1)
    reference_batch_size = _validate.check_int(
        "reference_batch_size", reference_batch_size, minimum=1
    )
    scaling = _validate.check_choice("scaling", scaling, _SCALINGS)
    ratio = batch_size / reference_batch_size
    if scaling == "linear":
        return float(ratio)
    if scaling == "sqrt":
        return float(math.sqrt(ratio))
    return 1.0


def _check_batch_sizes(batch_sizes: Any) -> tuple[int, ...]:
    if isinstance(batch_sizes, np.ndarray) and batch_sizes.ndim == 1:
        batch_sizes = batch_sizes.tolist()
    if isinstance(batch_sizes, (numbers.Integral, str, bytes)) or not isinstance(
        batch_sizes, Sequence
    ):
        raise TypeError(
            "Argument `batch_sizes` must be a sequence of positive integers, "
            f"such as (32, 64, 128). Received: batch_sizes={batch_sizes!r}"
        )
    sizes = tuple(batch_sizes)
    if not sizes:
        raise ValueError(
            f"Argument `batch_sizes` must not be empty. Received: batch_sizes={sizes}"
        )
    for size in sizes:
        if _validate._is_bool(size) or not isinstance(size, numbers.Integral):
            raise TypeError(
                "Argument `batch_sizes` must hold integers. Received: "
                f"batch_sizes={sizes!r} (holding {size!r} of type "
                f"{type(size).__name__})"
            )
        if size <= 0:
            raise ValueError(
                "Argument `batch_sizes` must hold positive integers. "
                f"Received: batch_sizes={sizes}"
            )
    if len(set(sizes)) != len(sizes):
        raise ValueError(
            "Argument `batch_sizes` must not repeat a size. "
            f"Received: batch_sizes={sizes}"
        )
    return tuple(sorted(int(s) for s in sizes))


def _check_lr_range(lr_range: Any) -> tuple[float, float] | str:
    if isinstance(lr_range, str):
        return _validate.check_choice("lr_range", lr_range, ("auto",))
    if isinstance(lr_range, np.ndarray) and lr_range.ndim == 1:
        # A numpy pair, such as `np.array([1e-4, 1e-1])` or `np.geomspace`'s
        # ends: its items become Python floats (check_learning_rate takes
        # numpy floating scalars but not numpy arrays).
        lr_range = lr_range.tolist()
    if not isinstance(lr_range, Sequence) or len(lr_range) != 2:
        raise TypeError(
            "Argument `lr_range` must be 'auto' or a pair (min_lr, max_lr). "
            f"Received: lr_range={lr_range!r}"
        )
    low = _validate.check_learning_rate("lr_range[0]", lr_range[0])
    high = _validate.check_learning_rate("lr_range[1]", lr_range[1])
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(
            "Argument `lr_range` must hold finite rates. "
            f"Received: lr_range={tuple(lr_range)!r}"
        )
    _validate.check_positive("lr_range[0]", low)
    if not high > low:
        raise ValueError(
            "Argument `lr_range` must have min_lr < max_lr. "
            f"Received: lr_range={tuple(lr_range)!r}"
        )
    return low, high


def _check_callbacks(callbacks: Any) -> list[Any]:
    if callbacks is None:
        return []
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(
            "Argument `callbacks` must be a list of keras.callbacks.Callback "
            "objects (pass `callbacks=[cb]` for a single callback). "
            f"Received: callbacks={callbacks!r} (of type {type(callbacks).__name__})"
        )
    for callback in callbacks:
        if not isinstance(callback, keras.callbacks.Callback):
            raise TypeError(
                "Argument `callbacks` must hold keras.callbacks.Callback "
                f"objects. Received: callbacks={callbacks!r} (holding "
                f"{callback!r} of type {type(callback).__name__})"
            )
    return list(callbacks)


class _TrialRecord(keras.callbacks.Callback):
    """Writes the trial's batch and rate into each epoch's logs."""

    def __init__(self, values: dict[str, float]):
        super().__init__()
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self.values)


class LRBatchSizeHyperModel(keras_tuner.HyperModel):
    """A hypermodel that adds the learning rate and batch size to a search.

    Wraps `build_model(hp)` (a KerasTuner build function or any model
    factory) and declares two hyperparameters:

    - ``batch_size``: ``hp.Choice`` over `batch_sizes`, the *global* batch
      (split evenly over the replicas of the strategy);
    - ``lr_normalized`` (explicit `lr_range`): ``hp.Float`` on a log scale,
      the rate at the reference batch size ``B_ref = min(batch_sizes)``;
      the trial trains at ``lr = lr_normalized * f(B / B_ref)``, with ``f``
      linear (SGD, Goyal et al. 2017, arXiv:1706.02677), square root (Adam
      family, Malladi et al. 2022, arXiv:2205.10287) or constant;
    - ``lr_position`` (``lr_range="auto"``): ``hp.Float`` in [0, 1], the
      log-position of the rate inside an interval set by one short LR range
      test (`keras_lr.lr_range_test`) at the reference batch size:
      ``[lr_min / 30, 3 lr_min]``, ``lr_min`` the rate at the lowest point
      of the test's zero-phase smoothed curve (Smith 2017,
      arXiv:1506.01186: the top of the region where the loss still falls),
      times ``f(B / B_ref)`` for the trial's batch ``B`` (`auto_range`).
      The test runs once, in the first trial, and its ``lr_min`` is stored
      with the search as the fixed hyperparameter ``auto_lr_min`` of that
      trial: the oracle adds it to its space (and saves it in the tuner's
      directory), so later trials, a search resumed with
      ``overwrite=False`` (a new process, a new hypermodel) and the workers
      of a distributed search all receive it in ``hp.values`` and use it
      instead of running a new test, and ``lr_position`` keeps one meaning
      throughout. (Trials that start before the first one ends, in a
      distributed search, run their own test; their ``auto_lr_min`` records
      the interval they used.) The oracle must accept new entries
      (KerasTuner's default ``allow_new_entries=True``,
      ``tune_new_entries=True``).

    Each trial's results (`trial.metrics`) also hold ``global_batch_size``,
    ``per_replica_batch_size``, ``num_replicas`` and ``learning_rate`` (the
    actual peak rate used).

    `build_model` may return a compiled model (its optimizer is re-created
    with the searched rate, keeping its other settings) or an uncompiled one
    (compiled with `optimizer`, `loss` and `metrics`). `build` returns a
    compiled model either way, so that the tuner's ``get_best_models()``
    can `evaluate` right away: an uncompiled one is compiled at the trial's
    rate when ``hp`` determines it (else at a placeholder 1e-3, which `fit`
    replaces).

    `fit` re-batches `tf.data.Dataset` inputs to the trial's global batch
    (KerasTuner's own `fit` would ignore ``batch_size`` for them; a dataset
    of single samples, whose elements have one axis less than the model's
    input, is batched), passes ``batch_size`` for arrays, and refuses, with
    a `TypeError`, inputs that fix their own batches (a generator, a
    `keras.utils.PyDataset`, a torch `DataLoader`). It appends `callbacks`
    to the tuner's, applies
    `schedule`, and adds a linear warmup where the global batch is at least
    `warmup_batch_size` (Goyal et al. 2017). A batch that runs out of memory
    fails its trial with `keras_tuner.errors.FailedTrialError` (ruled out
    before training where the device reports its free memory); the search
    goes on.

    Pass `distribution_strategy=hypermodel.distribution_strategy` to the
    tuner so that models are built and trained under the same strategy.

    Args:
        build_model: ``build_model(hp) -> keras.Model`` (or a callable of no
            argument returning a model).
        batch_sizes: global batch sizes to search; each a multiple of the
            number of replicas.
        lr_scaling: "linear", "sqrt" or "none"; default: "linear" for SGD,
            "sqrt" for the Adam family and for other optimizers (the
            optimizer of a compiled model, else `optimizer`).
        lr_range: "auto" or ``(min_lr, max_lr)`` of the *normalised* rate.
        optimizer: "sgd" (momentum 0.9), "adam", "adamw", or a callable
            ``optimizer(learning_rate) -> keras.optimizers.Optimizer``;
            for uncompiled models only.
        schedule: None, "one_cycle" (`keras_lr.schedules.OneCycle`) or
            "warmup_cosine" (`keras_lr.schedules.WarmupCosineDecay`); the
            searched rate is their peak. A schedule spans the epochs of one
            `fit` (``epochs - initial_epoch``): a `Hyperband` trial carried
            on from an earlier round runs a fresh schedule over its new
            epochs. A dataset of unknown length is counted once (a warning
            says so) to size it.
        loss: loss for uncompiled models.
        metrics: metrics for uncompiled models.
        callbacks: callbacks appended to the tuner's in every trial.
        distribution_strategy: a `tf.distribute.Strategy`, None, or "auto"
            (`keras_lr.tuner.default_strategy()`). On JAX, trials are built
            and trained under the `keras.distribution` set (with
            `keras.distribution.set_distribution`) before the hypermodel is
            made, else, for "auto", under `keras.distribution.DataParallel`
            over the local devices (`data_parallel_distribution()`, none on
            one device), which is left unset after the search. (KerasTuner's
            `clear_session()` before each trial unsets a distribution: the
            hypermodel sets the user's again.) Under it every batch must
            split over the devices: arrays of a number of samples (training
            and validation) that is not a multiple of theirs stop the search
            with a `FatalValueError`.
        warmup_batch_size: global batch from which warmup is added
            (None: never).
        warmup_fraction: length of that warmup, as a fraction of the
            trial's steps.
        range_test_steps: steps of each auto range test.
        name: the hypermodel's name.
        tunable: whether its hyperparameters are tuned.

    Example:

    >>> def build(hp):
    ...     return keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> hm = LRBatchSizeHyperModel(build, batch_sizes=(16, 64), loss="mse",
    ...     lr_range=(1e-3, 1e-1), optimizer="sgd", distribution_strategy=None)
    >>> hp = keras_tuner.HyperParameters()
    >>> model = hm.build(hp)
    >>> hp.values["batch_size"], hm.learning_rate(hp.values | {"batch_size": 64},
    ...     lr_normalized=0.01)
    (16, 0.04)
    """

    def __init__(
        self,
        build_model: Callable[..., Any],
        *,
        batch_sizes: Sequence[int] = (32, 64, 128, 256),
        lr_scaling: str | None = None,
        lr_range: str | tuple[float, float] = "auto",
        optimizer: str | Callable[[Any], Any] = "adam",
        schedule: str | None = None,
        loss: Any = None,
        metrics: Any = None,
        callbacks: Sequence[Any] = (),
        distribution_strategy: Any = _AUTO_STRATEGY,
        warmup_batch_size: int | None = 1024,
        warmup_fraction: float = 0.1,
        range_test_steps: int = 50,
        name: str | None = None,
        tunable: bool = True,
    ):
        super().__init__(name=name, tunable=tunable)
        if not callable(build_model):
            raise TypeError(
                "Argument `build_model` must be callable, returning a "
                f"keras.Model. Received: build_model={build_model!r}"
            )
        self.build_model = build_model
        self.batch_sizes = _check_batch_sizes(batch_sizes)
        if isinstance(optimizer, str):
            _validate.check_choice("optimizer", optimizer, _OPTIMIZERS)
        elif not callable(optimizer):
            raise TypeError(
                f"Argument `optimizer` must be one of {_OPTIMIZERS} or a callable "
                f"optimizer(learning_rate). Received: optimizer={optimizer!r}"
            )
        self.optimizer = optimizer
        self._scaling_from_model = lr_scaling is None
        if lr_scaling is None:
            lr_scaling = (
                _DEFAULT_SCALING.get(optimizer, "sqrt")
                if isinstance(optimizer, str)
                else "sqrt"
            )
        self.lr_scaling = _validate.check_choice("lr_scaling", lr_scaling, _SCALINGS)
        self.lr_range = _check_lr_range(lr_range)
        self.schedule = _validate.check_choice("schedule", schedule, _SCHEDULES)
        self.loss = loss
        self.metrics = metrics
        self.callbacks = _check_callbacks(callbacks)
        if warmup_batch_size is not None:
            _validate.check_int("warmup_batch_size", warmup_batch_size, minimum=1)
        self.warmup_batch_size = warmup_batch_size
        self.warmup_fraction = _validate.check_in_interval(
            "warmup_fraction",
            _validate.check_real("warmup_fraction", warmup_fraction),
            0.0,
            1.0,
            low_closed=False,
        )
        self.range_test_steps = _validate.check_int(
            "range_test_steps", range_test_steps, minimum=10
        )
        _strategy.check_strategy(distribution_strategy)
        strategy_arg = distribution_strategy
        if isinstance(distribution_strategy, str):
            distribution_strategy = _strategy.default_strategy()
        self.distribution_strategy = distribution_strategy
        # On JAX, the `keras.distribution` of the trials, entered in `build`
        # and `fit`: KerasTuner's `clear_session()` before each trial drops
        # the one set with `set_distribution`.
        self._user_distribution = _strategy.jax_distribution(None)
        self.distribution = _strategy.jax_distribution(strategy_arg)
        self.num_replicas = _strategy.num_replicas(
            distribution_strategy, self.distribution
        )
        bad = [b for b in self.batch_sizes if b % self.num_replicas]
        if bad:
            raise ValueError(
                "Argument `batch_sizes` must hold multiples of the number of "
                f"replicas ({self.num_replicas}): they are global batch sizes. "
                f"Received: batch_sizes={self.batch_sizes}"
            )
        self.reference_batch_size = self.batch_sizes[0]
        # The scaling rule of each model built, by its own hyperparameters
        # (with ``lr_scaling=None``, it follows the model's optimizer).
        self._rules: dict[frozenset | None, str] = {}
        self._reference_range: tuple[float, float] | None = None
        self._reference_lr_min: float | None = None

    # -- search space ---------------------------------------------------------
    def declare_hyperparameters(self, hp: keras_tuner.HyperParameters) -> None:
        hp.Choice("batch_size", list(self.batch_sizes))
        if self.lr_range == "auto":
            hp.Float("lr_position", 0.0, 1.0)
        else:
            low, high = self.lr_range
            hp.Float("lr_normalized", low, high, sampling="log")

    def learning_rate(self, values: dict[str, Any], **overrides: float) -> float:
        """The actual (peak) learning rate of a trial's hyperparameter values.

        With ``lr_range="auto"`` the interval comes from the values'
        ``auto_lr_min`` (stored by `fit`), else from the range test this
        hypermodel ran.

        Raises:
            ValueError: with ``lr_range="auto"``, if neither is known yet.
        """
        values = dict(values) | overrides
        batch = int(values["batch_size"])
        rule = self._rules.get(_model_key(values), self.lr_scaling)
        factor = scale_factor(batch, self.reference_batch_size, rule)
        if "lr_normalized" in values:
            return float(values["lr_normalized"]) * factor
        lr_min = values.get(AUTO_LR_MIN)
        if lr_min is None:
            lr_min = self._reference_lr_min  # the range test this one ran
        if lr_min is not None:
            low, high = _interval(float(lr_min))
            low, high = low * factor, high * factor
        else:
            raise ValueError(
                "The auto learning-rate interval is not known yet: no range "
                f"test has run and the values hold no `{AUTO_LR_MIN}`. "
                f"Received: values={values!r}"
            )
        u = float(values["lr_position"])
        return float(math.exp(math.log(low) + u * (math.log(high) - math.log(low))))

    def _known_learning_rate(self, values: dict[str, Any]) -> float | None:
        """The trial's rate if it can be computed now, else None."""
        if "lr_normalized" not in values and "lr_position" not in values:
            return None
        try:
            return self.learning_rate(values)
        except ValueError:
            return None

    # -- build ----------------------------------------------------------------
    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        if (
            self._user_distribution is not None
            and keras.distribution.distribution() is None
        ):
            # Set again: KerasTuner's `clear_session()` before each trial
            # dropped the user's, which the search must leave as it found.
            keras.distribution.set_distribution(self._user_distribution)
        # On JAX, variables are laid out over the devices of the distribution.
        with _strategy.scope(None, self.distribution):
            return self._build_in_scope(hp)

    def _build_in_scope(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        self.declare_hyperparameters(hp)
        # A `build_model(hp)` or a factory of no argument: told apart by its
        # signature, so that a TypeError raised inside it reaches the user.
        if _takes_hp(self.build_model):
            model = self.build_model(hp)
        else:
            model = self.build_model()
        # Fatal errors: the tuner stops the search at once, instead of
        # failing trial after trial with the same mistake.
        if not isinstance(model, keras.Model):
            raise keras_tuner.errors.FatalTypeError(
                "`build_model` must return a keras.Model. Received: an object "
                f"of type {type(model).__name__} ({model!r:.80})"
            )
        if not getattr(model, "compiled", False) and self.loss is None:
            raise keras_tuner.errors.FatalValueError(
                "`build_model` returned an uncompiled model and no `loss` was "
                "given: pass `loss=` (and `metrics=`) to LRBatchSizeHyperModel, "
                "or compile the model in `build_model`."
            )
        if self._scaling_from_model and getattr(model, "compiled", False):
            # The rule follows the optimizer the model was compiled with
            # (kept per model, for `learning_rate(values)` after a search
            # whose `build_model` picks the optimizer).
            name = type(_unwrap(model.optimizer)).__name__.lower()
            self.lr_scaling = _DEFAULT_SCALING.get(name, "sqrt")
            key = _model_key(hp.values)
            if key is not None:
                self._rules[key] = self.lr_scaling
        learning_rate = self._known_learning_rate(hp.values)
        if not getattr(model, "compiled", False):
            # Compiled here so that the tuner's `get_best_models()` returns a
            # model ready for `evaluate`; `fit` compiles it again at the
            # trial's (scheduled) rate.
            setattr(model, _DEFAULT_COMPILE, True)
            self._compile(
                model, _PLACEHOLDER_LR if learning_rate is None else learning_rate
            )
        elif learning_rate is not None:
            # The user's compiled model, with the optimizer re-created at the
            # trial's rate: `get_best_models()` and `build(best_hp)` give a
            # model that goes on at the rate the search chose.
            self._compile(model, learning_rate)
        return model

    # -- optimizer ------------------------------------------------------------
    def _make_optimizer(self, model: keras.Model, learning_rate: Any) -> Any:
        if _user_compiled(model) and model.optimizer is not None:
            old = _unwrap(model.optimizer)
            config = old.get_config()
            config["learning_rate"] = learning_rate
            optimizer = type(old).from_config(config)
            wrapper = model.optimizer
            if isinstance(wrapper, keras.optimizers.LossScaleOptimizer):
                # The loss scaling the user set (its initial scale and
                # growth) is kept around the re-created optimizer.
                optimizer = keras.optimizers.LossScaleOptimizer(
                    optimizer,
                    initial_scale=wrapper.initial_scale,
                    dynamic_growth_steps=wrapper.dynamic_growth_steps,
                )
            return optimizer
        if callable(self.optimizer):
            optimizer = self.optimizer(learning_rate)
            if not isinstance(optimizer, keras.optimizers.Optimizer):
                # Fatal: every trial would make the same.
                raise keras_tuner.errors.FatalTypeError(
                    "Argument `optimizer`, a callable, must return a Keras "
                    "optimizer built with the learning rate it is given, e.g. "
                    "`lambda lr: keras.optimizers.SGD(lr, momentum=0.9)`; a name "
                    "such as 'sgd' would train at Keras's default rate. "
                    f"Received: {optimizer!r:.80} (of type {type(optimizer).__name__})"
                )
            return optimizer
        if self.optimizer == "sgd":
            return keras.optimizers.SGD(learning_rate, momentum=0.9)
        if self.optimizer == "adamw":
            return keras.optimizers.AdamW(learning_rate)
        return keras.optimizers.Adam(learning_rate)

    def _compile(self, model: keras.Model, learning_rate: Any) -> None:
        # The optimizer must be created under the strategy that built the model.
        with _strategy.scope(self.distribution_strategy, self.distribution):
            optimizer = self._make_optimizer(model, learning_rate)
            if _user_compiled(model):
                config = dict(model._compile_config.config)
                config["optimizer"] = optimizer
                # Keras keeps no `auto_scale_loss` in the compile config: read
                # it off the optimizer (wrapped under a float16 policy unless
                # the user compiled with `auto_scale_loss=False`).
                config.setdefault(
                    "auto_scale_loss",
                    isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer),
                )
            else:
                config = {"optimizer": optimizer, "loss": self.loss}
                config["metrics"] = self.metrics
            model.compile(**config)

    def _schedule(self, lr: float, batch: int, total_steps: int) -> tuple[Any, int]:
        warmup = 0
        if self.schedule == "one_cycle":
            if total_steps < 2:
                # One step has no cycle: OneCycle's only step would be at
                # its final, near-zero rate.
                return lr, warmup
            return OneCycle(max_lr=lr, total_steps=total_steps), warmup
        # At least one warmup step, and at least one step after it: a run
        # of a single step has none (its only step would be at rate 0).
        steps = min(max(1, int(self.warmup_fraction * total_steps)), total_steps - 1)
        if self.schedule == "warmup_cosine":
            warmup = max(steps, 0)
            return WarmupCosineDecay(lr, max(total_steps, 1), warmup), warmup
        if self.warmup_batch_size is not None and batch >= self.warmup_batch_size:
            if steps >= 1:
                return Warmup(lr, steps), steps
        return lr, warmup

    # -- fit ------------------------------------------------------------------
    def fit(
        self, hp: keras_tuner.HyperParameters, model: keras.Model, *args, **kwargs
    ) -> Any:
        args, kwargs = _named_fit_arguments(args, kwargs)
        batch = int(hp.get("batch_size"))
        per_replica = batch // self.num_replicas
        samples = _training_samples(args, kwargs, model)
        if self.distribution is not None and self.num_replicas > 1:
            _check_even_split(args, kwargs, samples, self.num_replicas)
        if samples is not None and batch > samples:
            # `fit` would train on one batch of all the samples, at the rate
            # searched for `batch`: the trial would not be what it says.
            raise _feasibility.failed_trial(
                f"Global batch {batch} is larger than the {samples} training "
                f"samples: `fit` would train on a single batch of {samples} at the "
                f"rate searched for a batch of {batch}, so the trial is marked "
                "infeasible."
            )
        if self.lr_range == "auto":
            stored = hp.values.get(AUTO_LR_MIN)
            if stored is not None:
                # The search's interval: from an earlier trial, a resumed
                # search or another worker; no new range test.
                self._use_lr_min(float(stored))
            self.auto_range(model, batch, args, kwargs)
            if stored is None:
                hp.Fixed(AUTO_LR_MIN, float(self._reference_lr_min))
        # Counted before re-batching, which leaves a dataset's length unknown.
        # (A dataset of unknown length is counted only where a schedule or
        # a warmup needs the number of steps.)
        needs_total = self.schedule is not None or (
            self.warmup_batch_size is not None and batch >= self.warmup_batch_size
        )
        steps = kwargs.get("steps_per_epoch") or _steps_per_epoch(
            args, kwargs, batch, model, count=needs_total
        )
        args, kwargs = _rebatch(args, kwargs, batch, model)
        lr = self.learning_rate(hp.values)
        epochs = int(kwargs.get("epochs", 1)) - int(kwargs.get("initial_epoch", 0))
        total = max(1, epochs * int(steps)) if steps else max(1, epochs * 100)
        learning_rate, warmup = self._schedule(lr, batch, total)
        self._compile(model, learning_rate)
        record = {
            "global_batch_size": float(batch),
            "per_replica_batch_size": float(per_replica),
            "num_replicas": float(self.num_replicas),
            "learning_rate": float(lr),
            "warmup_steps": float(warmup),
        }
        kwargs["callbacks"] = [
            *(kwargs.get("callbacks") or []),
            *self.callbacks,
            _TrialRecord(record),
        ]
        _feasibility.check_fits(model, per_replica)
        try:
            with _strategy.scope(self.distribution_strategy, self.distribution):
                history = model.fit(*args, **kwargs)
        except Exception as error:
            if not _feasibility.is_out_of_memory(error):
                raise
            _feasibility.release_memory()
            raise _feasibility.failed_trial(
                f"Global batch {batch} ({per_replica} per replica) ran out of "
                f"memory: the trial is marked infeasible. ({type(error).__name__})"
            ) from error
        return history

    def auto_range(
        self, model: keras.Model, batch: int, args: tuple, kwargs: dict
    ) -> tuple[float, float]:
        """The interval of actual rates searched at global batch `batch`.

        One LR range test of `model`, at the reference batch size, gives
        the normalised interval ``[lr_min / 30, 3 lr_min]`` (cached on the
        hypermodel); every batch size gets it times its scaling factor.
        `fit` stores ``lr_min`` in the trial's hyperparameters
        (``auto_lr_min``), so that the search keeps this interval when
        resumed or distributed. Two decades, placed from where the best rate
        lay against ``lr_min``
        on 14 real tasks (the 13 of ``benchmarks/auto_range_check.py`` and
        the tuner benchmark's): between ``lr_min / 11`` and ``12 lr_min``,
        median ``0.72 lr_min``; the interval holds it on 13 of them.
        The range test measures the scale of rates at which the loss falls,
        which hardly moves with the batch size; what does move, the best
        rate for a given number of epochs, follows the scaling rule
        (Goyal et al. 2017, arXiv:1706.02677).

        Args:
            model: a built model of the search space (restored bitwise).
            batch: the trial's global batch size.
            args, kwargs: the data arguments of `fit`.
        """
        if self._reference_lr_min is None:
            ref = self.reference_batch_size
            ref_args, ref_kwargs = _rebatch(args, kwargs, ref, model)
            self._use_lr_min(self._auto_range(model, ref, ref_args, ref_kwargs))
        low, high = self._reference_range
        # The rule of `model` (the last built): it may follow its optimizer.
        factor = scale_factor(batch, self.reference_batch_size, self.lr_scaling)
        return low * factor, high * factor

    def _use_lr_min(self, lr_min: float) -> None:
        """Sets the reference interval from the range test's `lr_min`."""
        if lr_min != self._reference_lr_min:
            self._reference_lr_min = lr_min
            self._reference_range = _interval(lr_min)

    def _auto_range(self, model: keras.Model, batch: int, args, kwargs) -> float:
        """Runs the LR range test at `batch` and returns its `lr_min`."""
        from keras_lr import lr_range_test

        self._compile(model, 1e-3)
        x = args[0] if args else kwargs.get("x")
        y = args[1] if len(args) > 1 else kwargs.get("y")
        steps = self.range_test_steps
        with _strategy.scope(self.distribution_strategy, self.distribution):
            result = lr_range_test(
                model,
                x,
                y,
                batch_size=batch if y is not None else None,
                num_steps=steps,
                # The loss the trials minimise: `fit`'s weights, if any.
                sample_weight=kwargs.get("sample_weight"),
                class_weight=kwargs.get("class_weight"),
                verbose=0,
            )
        _, lr_min = result.suggest_range()
        lrs = np.asarray(result.lrs, dtype=float)
        if lr_min <= lrs[0] * (1 + 1e-9) or lr_min >= lrs[-1] * (1 - 1e-9):
            # The curve's lowest point at an end of the sweep locates nothing.
            from keras_lr.range_test import RangeTestWarning

            notes = "; ".join(result.diagnostics()) or "no other finding"
            warnings.warn(
                f"The auto range test ({steps} steps) found its lowest loss at "
                f"the {'start' if lr_min <= lrs[0] * (1 + 1e-9) else 'end'} of "
                f"its sweep (lr {lr_min:.3g}), so the searched interval "
                "rests on no measured minimum. Raise `range_test_steps`, or "
                f"pass `lr_range=(min_lr, max_lr)`. Range test: {notes}.",
                RangeTestWarning,
                stacklevel=2,
            )
        return float(lr_min)


#: The hyperparameters this hypermodel adds: not the model's own.
_OWN = frozenset({"batch_size", "lr_position", "lr_normalized", AUTO_LR_MIN})


def _model_key(values: dict[str, Any]) -> frozenset | None:
    """The model's own hyperparameter values (those `build_model` reads).

    None when a value cannot be hashed (the last build's rule is used).
    """
    try:
        return frozenset((k, v) for k, v in values.items() if k not in _OWN)
    except TypeError:
        return None


def _interval(lr_min: float) -> tuple[float, float]:
    """The normalised auto interval ``[lr_min / 30, 3 lr_min]``."""
    return lr_min / 30.0, 3.0 * lr_min


def _user_compiled(model: keras.Model) -> bool:
    """Whether `model` came compiled from `build_model` (not by `build`)."""
    return bool(getattr(model, "compiled", False)) and not getattr(
        model, _DEFAULT_COMPILE, False
    )


def _unwrap(optimizer: Any) -> Any:
    from keras_lr._state import base_optimizer

    return base_optimizer(optimizer)


def _is_dataset(data: Any) -> bool:
    return type(data).__module__.startswith("tensorflow") and hasattr(data, "rebatch")


def _is_unbatched(dataset: Any, model: keras.Model | None) -> bool:
    """Whether a dataset's elements are single samples, not batches.

    A component of rank 0 (a scalar label) is a single sample's: a batch
    has a batch axis in every component. Otherwise read from the model's
    first input: a batched element has its rank (batch axis included), a
    single sample one less. With no known input shape (a model built on its
    first batch), from the components' first axes: batches share theirs
    (unknown after ``dataset.batch(n)``, or all the same size), so first
    axes that differ are single samples' (``(10,)`` features with a
    ``(3,)`` one-hot label); equal ones are read as batches, as `fit`
    reads any dataset.
    """
    try:
        specs = keras.tree.flatten(dataset.element_spec)
        ranks = [spec.shape.rank for spec in specs]
    except (AttributeError, TypeError, ValueError):
        return False
    if not specs:
        return False
    if any(rank == 0 for rank in ranks):
        return True
    try:
        shape = model.inputs[0].shape if model is not None else None
    except (AttributeError, IndexError, TypeError, ValueError):
        shape = None
    if shape is not None and ranks[0] is not None:
        return ranks[0] == len(shape) - 1
    if any(rank is None for rank in ranks):
        return False
    firsts = {spec.shape[0] for spec in specs}
    return len(firsts) > 1


def _batched(dataset: Any, batch: int, model: keras.Model | None) -> Any:
    if _is_unbatched(dataset, model):
        return dataset.batch(batch)
    return dataset.rebatch(batch)


def _rebatch(
    args: tuple, kwargs: dict, batch: int, model: keras.Model | None = None
) -> tuple[tuple, dict]:
    args = list(args)
    kwargs = dict(kwargs)
    x = args[0] if args else kwargs.get("x")
    if _is_dataset(x):
        x = _batched(x, batch, model)
        if args:
            args[0] = x
        else:
            kwargs["x"] = x
        kwargs.pop("batch_size", None)
    elif isinstance(x, keras.utils.PyDataset) or not _in_memory(x):
        # Fatal: every trial would fail the same way.
        raise keras_tuner.errors.FatalTypeError(
            f"A {type(x).__name__} fixes its own batches, so the batch size "
            "cannot be searched (`fit` ignores `batch_size` for it): pass "
            "arrays (a dict or list of arrays) or a tf.data.Dataset."
        )
    else:
        kwargs["batch_size"] = batch
    val = kwargs.get("validation_data")
    if _is_dataset(val):
        kwargs["validation_data"] = _batched(val, batch, model)
    return tuple(args), kwargs


def _in_memory(x: Any) -> bool:
    """Whether `fit` batches `x` itself (arrays, tensors, a DataFrame...).

    Not a generator or iterator, nor a torch `DataLoader`: those yield
    batches of their own, and `fit` ignores `batch_size` for them.
    """
    from keras_lr.range_test._data import is_one_shot

    if is_one_shot(x):
        return False
    return not type(x).__module__.startswith("torch.utils.data")


#: Samples counted in datasets of unknown length, by dataset (one pass each).
_COUNTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _count_samples(dataset: Any, model: keras.Model | None) -> int | None:
    """Samples of a finite dataset whose length TensorFlow does not know.

    A `filter`, a generator or a file reader leaves the length unknown; the
    schedules that span the training (``"one_cycle"``, ``"warmup_cosine"``,
    a warmup) need it. One pass over the data counts them, once per dataset,
    with a warning that says how to skip it.
    """
    import tensorflow as tf

    try:
        return _COUNTED[dataset]
    except (KeyError, TypeError):
        pass
    if _is_unbatched(dataset, model):
        count = dataset.reduce(tf.constant(0, tf.int64), lambda c, _: c + 1)
    else:

        def add(c, batch):
            size = tf.shape(tf.nest.flatten(batch)[0])[0]
            return c + tf.cast(size, tf.int64)

        count = dataset.reduce(tf.constant(0, tf.int64), add)
    n = int(count)
    warnings.warn(
        f"LRBatchSizeHyperModel: the dataset's length is unknown; one pass over "
        f"it counted {n} samples, for the schedule's length. To skip the pass, "
        "pass `steps_per_epoch` or declare the length with "
        "`dataset.apply(tf.data.experimental.assert_cardinality(n))`.",
        stacklevel=3,
    )
    try:
        _COUNTED[dataset] = n
    except TypeError:
        pass
    return n or None


def _dataset_samples(
    dataset: Any, model: keras.Model | None, *, count: bool = False
) -> int | None:
    """Samples in one pass of a finite dataset (None when infinite).

    A batched dataset holds its cardinality times its batch size, read from
    its first batch (the last batch may be smaller: an estimate within one
    batch). A dataset of unknown length is counted (`_count_samples`) when
    `count`, else None.
    """
    n = int(dataset.cardinality())
    if n == -2 and count:  # tf.data.UNKNOWN_CARDINALITY
        return _count_samples(dataset, model)
    if n <= 0:
        return None
    if _is_unbatched(dataset, model):
        return n
    try:
        first = next(iter(dataset.take(1)))
        size = int(np.shape(keras.tree.flatten(first)[0])[0])
    except (StopIteration, TypeError, IndexError, ValueError):
        return None
    return n * size


def _steps_per_epoch(
    args, kwargs, batch: int, model: keras.Model | None = None, *, count: bool = False
) -> int | None:
    n = _training_samples(args, kwargs, model, count=count)
    return max(1, math.ceil(n / batch)) if n else None


def _training_samples(
    args, kwargs, model: keras.Model | None = None, *, count: bool = False
) -> int | None:
    """Samples `fit` trains on per epoch, where known without a pass over
    the data (with `count`, a dataset of unknown length is counted)."""
    x = args[0] if args else kwargs.get("x")
    if _is_dataset(x):
        return _dataset_samples(x, model, count=count) or None
    if not _in_memory(x):
        return None
    try:
        first = keras.tree.flatten(x)[0]
        n = int(np.shape(first)[0])
    except (TypeError, IndexError, ValueError):
        return None
    split = float(kwargs.get("validation_split", 0.0) or 0.0)
    return int(n * (1.0 - split))


def _check_even_split(args, kwargs, samples: int | None, replicas: int) -> None:
    """Refuses arrays whose last batch cannot split over the JAX devices.

    Under a `keras.distribution` on JAX, every batch is split evenly over
    the devices, the last one of an epoch (the remainder) too; searched
    batches are multiples of `replicas`, so the samples must be. (A
    `tf.distribute` strategy splits uneven batches; a dataset is not
    checked.)

    Raises:
        FatalValueError: for a training or validation set of arrays whose
            size is not a multiple of `replicas` (every trial would fail
            at its last batch).
    """
    counts = {"training": samples}
    x = args[0] if args else kwargs.get("x")
    split = float(kwargs.get("validation_split", 0.0) or 0.0)
    if split and samples is not None:
        counts["validation"] = int(np.shape(keras.tree.flatten(x)[0])[0]) - samples
    val = kwargs.get("validation_data")
    if isinstance(val, (tuple, list)) and val and _in_memory(val[0]):
        counts["validation"] = _training_samples((val[0],), {})
    for what, count in counts.items():
        if count is not None and count % replicas:
            raise keras_tuner.errors.FatalValueError(
                f"Under a keras.distribution over {replicas} devices (JAX), "
                "every batch, the last of each epoch included, must split "
                f"evenly over the devices: the number of {what} samples must "
                f"be a multiple of {replicas}. Received: {count} {what} samples "
                f"(drop {count % replicas} of them)."
            )


#: `Model.fit`'s arguments after `x` and `y`, in order.
_FIT_ARGUMENTS = tuple(inspect.signature(keras.Model.fit).parameters)[3:]


def _named_fit_arguments(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """`fit`'s positional arguments after ``x, y`` passed by name (the
    hypermodel reads and replaces `batch_size` and `epochs`).

    >>> _named_fit_arguments((1, 2, None, 3), {"verbose": 0})
    ((1, 2), {'verbose': 0, 'batch_size': None, 'epochs': 3})
    """
    if len(args) <= 2:
        return args, kwargs
    named = dict(zip(_FIT_ARGUMENTS, args[2:]))
    twice = sorted(set(named) & set(kwargs))
    if twice:
        raise TypeError(
            f"`fit` got the argument(s) {twice} both by position and by name."
        )
    return tuple(args[:2]), {**kwargs, **named}


def _takes_hp(fn: Any) -> bool:
    """Whether `fn` takes a positional argument (the hyperparameters)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    kinds = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.VAR_POSITIONAL,
    )
    return any(p.kind in kinds for p in signature.parameters.values())
