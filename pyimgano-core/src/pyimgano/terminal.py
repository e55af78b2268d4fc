"""Terminal output shared by the commands and the benchmark's tables."""

from __future__ import annotations

import io
from typing import Any


def natural_width(renderable: Any) -> int:
    """Columns a rich renderable takes when nothing limits it (a table: every cell on one line)."""
    from rich.console import Console
    from rich.measure import Measurement

    console = Console(width=100_000, file=io.StringIO())
    return Measurement.get(console, console.options, renderable).maximum
