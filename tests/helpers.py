"""Small helpers shared by the tests."""

import numpy as np


def sparse_matrix(rng, n_out, n_in, density, scale=0.5):
    W = rng.normal(0, scale, (n_out, n_in))
    return W * (rng.random((n_out, n_in)) < density)
