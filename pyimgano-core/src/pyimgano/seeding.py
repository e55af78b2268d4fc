"""One seed for every global random generator a run touches."""

from __future__ import annotations

import random
import sys

import numpy as np


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and (when already imported) torch's global generators.

    torch is seeded only if something imported it already: the core never imports torch,
    so call this again after building a detector whose import brought torch in.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
