"""Identical images across the sets of one fit or benchmark, found by content hash.

A validation image that is also a training image has been memorised by the detector: its
score is lower than a new good part's, so a threshold fitted on it rejects more good parts
than it promises. A defect image that is also a training image was learnt as normal. A
test image that is also a training image inflates the benchmark's figures. None of this
shows in any number pyimgano reports, so it is looked for:

- ``fit`` (:meth:`pyimgano.Pipeline.fit`, the API and the command) **refuses** training,
  validation and defect images that overlap, in one line naming the sets, the count and one
  pair: the user chose those sets in this call and the calibration would be wrong without a
  sign;
- ``benchmark`` **warns** (a note under the run's line on the terminal, kept in its job
  record, ``jobs/*.json`` ``extra.notes``) when
  test images repeat training images: the data set is given, its published figures are
  computed the same way, and the user cannot change it from the command line.

Cost: a file is hashed only when another set holds a file of exactly its size (a stat per
file otherwise); an array (API input) is hashed when another set holds an array of its
shape and type (SHA-256, about 1 GB/s). Arrays and files are not compared with each other.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pyimgano.userfiles import sha256_file


@dataclass(frozen=True)
class Overlap:
    """Images of set ``second`` identical to images of set ``first``: how many, and one pair."""

    first: str
    second: str
    count: int
    example: tuple[str, str]

    def describe(self) -> str:
        return (f"{self.count} of the {self.second} {'is' if self.count == 1 else 'are'} identical to "
                f"{self.first} ({self.example[1]} = {self.example[0]})")


def find_overlaps(groups: dict[str, Any]) -> list[Overlap]:
    """Every pair of sets (in the order given) sharing identical images. A set is a sequence of
    paths or arrays (or one 4-D array); None, and a set given as an iterator, are left out."""
    items = {name: _items(value) for name, value in groups.items()}
    items = {name: value for name, value in items.items() if value}
    cheap = {name: [(_cheap_key(item), label) for item, label in value] for name, value in items.items()}
    owners: dict[Any, set[str]] = {}
    for name, keys in cheap.items():
        for key, _ in keys:
            if key is not None:
                owners.setdefault(key, set()).add(name)
    shared = {key for key, names in owners.items() if len(names) > 1}
    digests: dict[str, dict[str, str]] = {}  # set -> digest -> first label
    for name, value in items.items():
        found: dict[str, str] = {}
        for (item, label), (key, _) in zip(value, cheap[name]):
            if key in shared:
                digest = _digest(item)
                if digest is not None:
                    found.setdefault(digest, label)
        digests[name] = found
    names = list(items)
    overlaps = []
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            common = [d for d in digests[second] if d in digests[first]]
            if common:
                overlaps.append(Overlap(first, second, len(common),
                                        (digests[first][common[0]], digests[second][common[0]])))
    return overlaps


def _items(value: Any) -> list[tuple[Any, str]]:
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        if value.ndim == 4:
            return [(image, f"image array [{i}]") for i, image in enumerate(value)]
        return [(value, "image array")]
    if isinstance(value, (str, os.PathLike)):
        return [(value, str(value))]
    if not isinstance(value, Sequence):
        return []  # an iterator: read once, by the fit
    return [(item, str(item) if isinstance(item, (str, os.PathLike)) else f"image [{i}]")
            for i, item in enumerate(value)]


def _cheap_key(item: Any) -> Any:
    if isinstance(item, (str, os.PathLike)):
        try:
            return ("file", os.stat(item).st_size)
        except OSError:
            return None  # the fit names it when it reads it
    if isinstance(item, np.ndarray):
        return ("array", item.shape, item.dtype.str)
    return None


def _digest(item: Any) -> str | None:
    if isinstance(item, np.ndarray):
        return hashlib.sha256(np.ascontiguousarray(item).data).hexdigest()
    try:
        return sha256_file(item)[0]
    except OSError:
        return None
