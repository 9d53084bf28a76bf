"""`python -m keras_lr` runs the command-line interface."""

from keras_lr.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
