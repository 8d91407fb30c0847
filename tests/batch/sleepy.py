"""A ``python:`` source for the cluster test: a tiny torch model whose first attempt sleeps long enough
for the test to kill its worker mid-job (``forgeml batch`` tells a job its attempt number)."""

from __future__ import annotations

import os
import time


def build():
    import numpy as np
    import torch

    if os.environ.get("FORGEML_BATCH_ATTEMPT") == "1":
        time.sleep(300)  # the test kills this worker long before; a retry (attempt 2) does not sleep
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Tanh()).eval()
    return model, (np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32),)
