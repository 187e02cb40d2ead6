"""``python -m safelog``: see :mod:`safelog._cli`."""

from ._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
