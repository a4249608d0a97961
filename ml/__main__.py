"""``python -m ml <verb>``: see :mod:`ml.cli`."""

from ml.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
