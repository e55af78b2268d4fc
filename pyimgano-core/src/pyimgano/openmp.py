"""How OpenMP threads wait in pyimgano's own processes (set before torch or faiss is loaded).

A fit or a prediction alternates between libraries that each keep a pool of threads on the same
cores: torch's OpenMP runtime, faiss's (each wheel ships its own copy of GNU OpenMP) and
OpenVINO's TBB. By default an OpenMP thread that finishes its share of a parallel region spins
for a while before it sleeps, and on a machine with few cores the next library's threads wait for
the spinning ones: on the 2-core development machine a VisA image's maps (two small matrix
products and a resize in torch, just after a faiss search) took 16-19 ms instead of 6-7
(``docs/patchcore.md``, round 5). ``OMP_WAIT_POLICY=PASSIVE`` lets idle threads sleep at once. It
changes no value, only who waits.

An OpenMP runtime reads the variable once, when it is loaded. :func:`apply_wait_policy` sets it,
unless it is set already, at the start of the ``pyimgano`` command; benchmark worker processes
inherit it. A program that uses the library sets it itself before importing torch or faiss, e.g.
``OMP_WAIT_POLICY=PASSIVE python my_script.py``.
"""

from __future__ import annotations

import os

WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
WAIT_POLICY = "PASSIVE"


def apply_wait_policy() -> str:
    """Ask OpenMP threads to sleep when idle in this process and those it starts, unless the
    user chose a policy (:data:`WAIT_POLICY_ENV`); returns the policy in force."""
    return os.environ.setdefault(WAIT_POLICY_ENV, WAIT_POLICY)
