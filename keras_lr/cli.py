"""The `keras-lr` command line: `demo` and `find`.

    keras-lr demo [--steps N] [--batch-size B] [--start-lr LR] [--end-lr LR]
                  [--output PNG] [--quiet]
    keras-lr find MODEL.keras DATA.npz [same options]

`demo` runs a range test on a small CNN over the real Fashion-MNIST images
that ship inside the package (no download), prints the suggestions and
writes the plot. `find` does the same for a saved, compiled model and an
`.npz` file of images and labels (uint8 images are scaled to [0, 1]).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
import zipfile
from collections.abc import Sequence
from typing import Any

__all__ = ["build_demo_model", "main"]

_X_KEYS = ("x", "images", "x_train", "X")
_Y_KEYS = ("y", "labels", "y_train", "Y")
# The fewest steps `keras_lr.lr_range_test` accepts; the most the command
# takes (the sweep's rates are allocated up front).
_MIN_STEPS = 10
_MAX_STEPS = 1_000_000
# The options that set the arguments of `lr_range_test` its notes name.
_OPTIONS = {"start_lr": "--start-lr", "end_lr": "--end-lr", "num_steps": "--steps"}
# The backends that can train (`fit`).
_BACKENDS = ("tensorflow", "jax", "torch")


def _int_at_least(minimum: int, maximum: int | None = None) -> Any:
    """An argparse `type` for integers >= `minimum` (and <= `maximum`)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be an integer, got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


def _positive_float(text: str) -> float:
    """An argparse `type` for finite floats > 0 (a learning rate)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


_positive_float.__name__ = "float"


def build_demo_model(seed: int = 0) -> Any:
    """The demo's CNN for 28x28 grey images, compiled with SGD + momentum.

    Example:

    >>> model = build_demo_model()
    >>> model.output_shape
    (None, 10)
    """
    import keras

    keras.utils.set_random_seed(seed)
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(16, 3, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.MaxPooling2D(),
            layers.Conv2D(32, 3, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.GlobalAveragePooling2D(),
            layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _report(result: Any, output: str, started: float) -> None:
    import warnings

    from keras_lr import suggest

    print(
        f"\nRange test: {len(result)} steps, lr {result.lrs[0]:.2g} -> "
        f"{result.lrs[-1]:.2g}, diverged: {result.diverged} "
        f"({time.time() - started:.1f} s)"
    )
    print("Suggestions:")
    for method in suggest.RULES:
        try:
            lr = result.suggestion(method, warn=False)
        except ValueError as error:
            print(f"  {method:<9} -      ({error})")
            continue
        note = "   <- keras_lr's suggestion" if method == "default" else ""
        print(f"  {method:<9} {lr:.3g}{note}")
    try:
        low, high = result.suggest_range()
    except ValueError as error:
        print(f"Range for cyclical / 1cycle schedules: -  ({error})")
    else:
        print(f"Range for cyclical / 1cycle schedules: {low:.3g} .. {high:.3g}")
    for finding in result.diagnostics():
        # In the options of this command, not the arguments of lr_range_test.
        for name, option in _OPTIONS.items():
            finding = re.sub(rf"\b{name}\b", option, finding)
        print(f"Note: {finding}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig = result.plot()
    fig.savefig(output, dpi=110)
    print(f"Plot written to {output}")


def _demo(args: argparse.Namespace) -> int:
    import numpy as np

    import keras_lr
    from keras_lr.data import load_fashion_mnist_sample

    (x, y), _ = load_fashion_mnist_sample()
    x = (x[..., None] / np.float32(255.0)).astype("float32")
    print(
        f"keras-lr demo: {x.shape[0]} real Fashion-MNIST images shipped with the "
        "package; a small CNN with SGD + momentum."
    )
    model = build_demo_model()
    started = time.time()
    result = keras_lr.lr_range_test(
        model,
        x,
        y,
        batch_size=args.batch_size,
        start_lr=args.start_lr,
        end_lr=args.end_lr,
        num_steps=args.steps,
        verbose=0 if args.quiet else 1,
    )
    _report(result, args.output, started)
    return 0


def _load_npz(path: str) -> tuple[Any, Any]:
    import numpy as np

    if not zipfile.is_zipfile(path):
        with open(path, "rb") as file:
            if file.read(6) != b"\x93NUMPY":
                # Else numpy would take it for a pickle, and say so.
                raise ValueError(
                    "it is not an .npz archive (write one with "
                    "numpy.savez(path, x=images, y=labels)), or it is truncated"
                )
    data = np.load(path)
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError("it holds one array, not an .npz archive of x and y")
    with data:
        keys = list(data.keys())
        x_key = next((k for k in _X_KEYS if k in keys), None)
        y_key = next((k for k in _Y_KEYS if k in keys), None)
        if x_key is None or y_key is None:
            raise ValueError(
                f"{path} must hold images and labels under keys such as 'x' "
                f"and 'y'. Received keys: {keys}"
            )
        x, y = data[x_key], data[y_key]
    if x.dtype == np.uint8:
        x = x.astype("float32") / np.float32(255.0)
    return x, y


def _non_finite(array: Any) -> int:
    """How many values of a float array are NaN or infinite (0 for integers).

    Example:

    >>> import numpy as np
    >>> _non_finite(np.array([1.0, np.nan, np.inf])), _non_finite(np.arange(3))
    (2, 0)
    """
    import numpy as np

    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.inexact):
        return 0
    return int(array.size - np.count_nonzero(np.isfinite(array)))


def _label_range_error(model: Any, y: Any) -> str | None:
    """What is wrong with integer class labels for a classifier, or None.

    Checked before training: out-of-range labels make TensorFlow and
    PyTorch raise mid-run, and JAX train on silently (its gathers clip).
    Only integer labels (or floats of integer value) of a model with a
    sparse categorical loss whose output's last axis has two or more units
    are read as class indices.
    """
    import numpy as np

    y = np.asarray(y)
    shape = getattr(model, "output_shape", None)
    loss = getattr(model, "loss", None)
    # A loss given as a string, a function or a `keras.losses.Loss`.
    if isinstance(loss, str):
        names = loss.lower()
    else:
        parts = (type(loss).__name__, getattr(loss, "name", ""),
                 getattr(loss, "__name__", ""))  # fmt: skip
        names = " ".join(map(str, parts)).lower()
    sparse = "sparse" in names and "categorical" in names
    integral = np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.floating)
        and bool(np.all(np.isfinite(y)))
        and bool(np.all(y == np.round(y)))
    )
    if not (
        sparse
        and integral
        and y.size
        and isinstance(shape, tuple)
        and len(shape) >= 2
        and isinstance(shape[-1], int)
        and shape[-1] >= 2
    ):
        return None
    classes = shape[-1]
    # Labels equal to the loss's `ignore_class` (a segmentation's void
    # label, often -1 or 255) are no class.
    try:
        ignore = loss.get_config().get("ignore_class")
    except (AttributeError, TypeError, NotImplementedError):
        ignore = None
    if ignore is not None:
        y = y[y != ignore]
        if not y.size:
            return None
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= classes:
        return (
            f"range from {low} to {high}, but the model has {classes} output "
            f"units: class labels must lie in 0..{classes - 1}"
        )
    return None


def _data_errors() -> tuple[type[Exception], ...]:
    """What a range test raises on data that does not fit the model.

    Labels out of range, for instance, raise TensorFlow's
    `InvalidArgumentError` or PyTorch's `IndexError`, not a `ValueError`.
    """
    import keras

    errors: tuple[type[Exception], ...] = (ValueError, TypeError, IndexError)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        errors += (tf.errors.InvalidArgumentError,)
    return errors


def _message(error: Exception) -> str:
    """The error's message on one line, without the context Keras wraps it in.

    TensorFlow's graph errors lose the op's stack, and a layer's error the
    "Exception encountered when calling ..." frame (with its terminal escape
    codes and the arguments received) that Keras puts around it.
    """
    text = str(error)
    if "Detected at node" in text:
        # "Graph execution error: Detected at node ... (most recent call last):
        # <stack> <blank line> <the message>\n\t [[{{node ...}}]]"
        text = text.rsplit("\n\n", 1)[-1].split("\n\t", 1)[0]
    # "Exception encountered when calling X.\n\n\x1b[1m<the message>\x1b[0m
    # \n\nArguments received by X: ...", nested once per layer: the innermost.
    core = re.search(r"\x1b\[1m((?:(?!\x1b\[[01]m).)*)\x1b\[0m", text, re.DOTALL)
    if core and text.startswith("Exception encountered when calling"):
        text = core.group(1)
    return " ".join(text.split())


def _find(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import keras

    import keras_lr

    for name, path in (("model", args.model), ("data", args.data)):
        if not os.path.isfile(path):
            parser.error(f"{name} file not found: {path}")
    if args.model.endswith(".keras") and not zipfile.is_zipfile(args.model):
        # Keras would say "File not found".
        parser.error(
            f"cannot load the model {args.model}: it is not a .keras archive "
            "(write one with model.save('model.keras')), or it is truncated"
        )
    try:
        model = keras.models.load_model(args.model)
    except (OSError, ValueError, TypeError) as error:
        parser.error(f"cannot load the model {args.model}: {error}")
    if not getattr(model, "compiled", False) or model.optimizer is None:
        parser.error(
            f"{args.model} holds no compiled model (save it after model.compile(...))"
        )
    try:
        x, y = _load_npz(args.data)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        parser.error(f"cannot read the data {args.data}: {error}")
    for name, array in (("images", x), ("labels", y)):
        # A NaN sample would cut the sweep where its batch comes, and the
        # curve would read as a rate too high.
        bad = _non_finite(array)
        if bad:
            parser.error(
                f"the {name} of {args.data} hold {bad} value(s) that are not "
                "finite (NaN or Inf)"
            )
    labels = _label_range_error(model, y)
    if labels:
        parser.error(f"the labels of {args.data} {labels}")
    expected = model.input_shape
    if (
        isinstance(expected, tuple)
        and len(expected) == x.ndim + 1
        and expected[-1] == 1
    ):
        x = x[..., None]
    started = time.time()
    try:
        result = keras_lr.lr_range_test(
            model,
            x,
            y,
            batch_size=args.batch_size,
            start_lr=args.start_lr,
            end_lr=args.end_lr,
            num_steps=args.steps,
            verbose=0 if args.quiet else 1,
        )
    except _data_errors() as error:
        # Data that does not fit the model, a model without a loss, NaN
        # inputs: the user's files, not a crash of the tool.
        parser.error(
            f"the range test of {args.model} on {args.data} failed: {_message(error)}"
        )
    _report(result, args.output, started)
    return 0


def _check_output(path: str, parser: argparse.ArgumentParser) -> str:
    """The plot's path, checked before any training; ``.png`` when no extension.

    Raises (through `parser.error`, exit status 2): an empty path, a folder,
    a missing folder, a format matplotlib cannot write, or a file that
    cannot be opened for writing.
    """
    if not path.strip():
        parser.error("--output must name a file, e.g. --output lr.png")
    if os.path.isdir(path):
        parser.error(f"--output is a folder: {path} (give a file name, e.g. lr.png)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        parser.error(f"the folder of --output does not exist: {folder}")
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    if not extension:
        path += ".png"
    else:
        from matplotlib.figure import Figure

        formats = Figure().canvas.get_supported_filetypes()
        if extension not in formats:
            parser.error(
                f"--output {path}: matplotlib cannot write .{extension} files; "
                f"use one of {', '.join('.' + f for f in sorted(formats))}"
            )
    # Opened once now, so that a file that cannot be written (no permission,
    # a read-only disk, a name too long) is refused before the range test.
    existed = os.path.exists(path)
    try:
        with open(path, "ab"):
            pass
    except OSError as error:
        parser.error(f"cannot write --output {path}: {error.strerror or error}")
    if not existed:
        os.remove(path)
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-lr", description="Learning-rate range tests for Keras models."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="range test on the embedded Fashion-MNIST sample"
    )
    find = sub.add_parser("find", help="range test of a saved model on an .npz file")
    find.add_argument("model", help="a compiled model saved as .keras")
    find.add_argument(
        "data",
        help="an .npz with images (x) and labels (y); uint8 images are scaled "
        "to [0, 1]",
    )
    for command, batch_size, output in (
        (demo, 64, "keras_lr_demo.png"),
        (find, 32, "lr_range_test.png"),
    ):
        command.add_argument(
            "--steps",
            type=_int_at_least(_MIN_STEPS, _MAX_STEPS),
            default=100,
            help=f"steps of the sweep (>= {_MIN_STEPS}; default: %(default)s)",
        )
        command.add_argument(
            "--batch-size",
            type=_int_at_least(1),
            default=batch_size,
            help="default: %(default)s",
        )
        command.add_argument(
            "--start-lr",
            type=_positive_float,
            default=1e-7,
            help="first rate of the sweep (default: %(default)s)",
        )
        command.add_argument(
            "--end-lr",
            type=_positive_float,
            default=10.0,
            help="last rate of the sweep, > --start-lr (default: %(default)s)",
        )
        command.add_argument(
            "--output",
            default=output,
            help="plot file, .png unless another extension is given "
            "(default: %(default)s)",
        )
        command.add_argument("--quiet", action="store_true", help="no progress bar")
        command.set_defaults(command_parser=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `keras-lr` and `python -m keras_lr`.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.

    Example:

    >>> import contextlib, io
    >>> with contextlib.redirect_stdout(io.StringIO()) as out:
    ...     with contextlib.suppress(SystemExit):
    ...         main(["--help"])
    >>> "demo" in out.getvalue() and "find" in out.getvalue()
    True
    """
    import keras

    from keras_lr.range_test.result import MIN_POINTS

    parser = _parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Found before the range test runs, not after.
    command = args.command_parser
    backend = keras.backend.backend()
    if backend not in _BACKENDS:
        # Keras's NumPy and OpenVINO backends have no `fit`.
        command.error(
            f"the {backend} backend of Keras cannot train: set KERAS_BACKEND "
            f"to one of {', '.join(_BACKENDS)}"
        )
    if not args.end_lr > args.start_lr:
        command.error(
            "argument --end-lr: must be > --start-lr. Received: "
            f"--start-lr={args.start_lr:g}, --end-lr={args.end_lr:g}"
        )
    args.output = _check_output(args.output, command)
    if args.steps < MIN_POINTS:
        print(
            f"{command.prog}: warning: --steps {args.steps} gives fewer than "
            f"{MIN_POINTS} points: the suggestions will be unreliable (the "
            "default is 100)",
            file=sys.stderr,
        )
    if args.command == "demo":
        return _demo(args)
    return _find(args, command)
