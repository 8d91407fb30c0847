"""Zoo models that are trained here come out the same whatever BLAS thread count the building process
has (a 1-CPU batch worker sets OPENBLAS_NUM_THREADS=1; an in-process run uses every core): a matrix
product split over more threads sums in another order, and PCA and the MLP followed it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")


def test_sk_digits_trains_to_the_same_weights_under_one_or_two_blas_threads():
    from threadpoolctl import threadpool_limits

    from models_zoo.sklearn_models import build_digits

    built = []
    for n in (1, 2):
        with threadpool_limits(limits=n):
            m = build_digits().model
        built.append([m[1].components_, *m[-1].coefs_, *m[-1].intercepts_])
    assert all(np.array_equal(a, b) for a, b in zip(*built))
