"""Vigil benchmarks (``make bench``): each module's ``run()`` prints and returns its figures."""
