"""pullwatch benchmarks (``make bench`` / ``python -m bench``): each row compares pullwatch with a baseline."""
