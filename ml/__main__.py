"""``python -m ml <verb>``: see :mod:`ml.cli.main`."""

from ml.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
