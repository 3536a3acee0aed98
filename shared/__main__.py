"""``python -m shared`` is the ``pullwatch`` command."""

from shared.cli import main

main()
