"""``python -m sandbox`` is the ``pullwatch-sandbox`` command (``sandbox/cli.py``)."""

from sandbox.cli import main

main()
