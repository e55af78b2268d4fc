"""What every front end of the kit shares: the check record, its result, and running one."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

Status = Literal["passed", "failed", "known failure", "fixed", "not applicable"]


class CheckFailed(AssertionError):
    """A conformance check failed; the message starts with the check's name."""

    def __init__(self, check: str, message: str) -> None:
        self.check = check
        self.detail = message
        super().__init__(f"{check}: {message}")


class SetupFailed(Exception):
    """What a check needs (e.g. the shared fit) could not be made; the message says why."""


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one component.

    ``status`` is ``passed``, ``failed``, ``known failure`` (failed, and declared so with a
    reason), ``fixed`` (declared as a known failure but passed: remove the declaration) or
    ``not applicable`` (the component's capabilities say the check does not apply).
    """

    component: str
    check: str
    status: Status
    message: str = ""
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Check:
    """One conformance check: a plain function plus when it applies.

    ``applies(subject)`` returns None when the check runs on ``subject``, else the reason
    it does not (e.g. ``capabilities.pixel_maps is False``).
    """

    name: str
    func: Callable[..., None]
    applies: Callable[[Any], str | None]

    def __call__(self, subject: Any) -> None:
        self.func(subject)

    def __repr__(self) -> str:
        return self.name


def always(_subject: Any) -> str | None:
    return None


def describe(exc: BaseException) -> str:
    """An error as text: pyimgano's own errors already say what is wrong, others get their type."""
    from pyimgano.errors import PyimganoError

    return str(exc) if isinstance(exc, (PyimganoError, SetupFailed)) else f"{type(exc).__name__}: {exc}"


def wrap_check(name: str, func: Callable[..., None], prepare: Callable[[Any], Any]) -> Callable[..., None]:
    """Turn any exception of ``func`` into a :class:`CheckFailed` that names the check."""

    @functools.wraps(func)
    def run(subject: Any, *args: Any, **kwargs: Any) -> None:
        target = prepare(subject)
        try:
            func(target, *args, **kwargs)
        except CheckFailed:
            raise
        except Exception as exc:
            raise CheckFailed(name, describe(exc)) from exc

    return run


def selector(checks: Iterable[str] | None) -> Callable[[str], bool] | None:
    """A ``select`` predicate keeping only the named checks (None: keep all)."""
    return None if checks is None else set(checks).__contains__


def run_checks(
    checks: Iterable[Check],
    subject: Any,
    component: str,
    known_failures: Mapping[str, str] | None = None,
    select: Callable[[str], bool] | None = None,
) -> list[CheckResult]:
    """Run checks on a subject and return one result per check, known failures included."""
    known = dict(known_failures or {})
    checks = list(checks)
    names = {c.name for c in checks}
    unknown = sorted(set(known) - names)
    if unknown:
        from pyimgano.errors import InvalidParams

        raise InvalidParams(f"known_failures names unknown check(s) {unknown}; checks are: {sorted(names)}")
    results = []
    for check in checks:
        if select is not None and not select(check.name):
            continue
        reason = check.applies(subject)
        if reason is not None:
            results.append(CheckResult(component, check.name, "not applicable", reason))
            continue
        start = time.perf_counter()
        try:
            check(subject)
        except CheckFailed as exc:
            seconds = time.perf_counter() - start
            if check.name in known:
                message = f"{known[check.name]} [{exc}]"
                results.append(CheckResult(component, check.name, "known failure", message, seconds))
            else:
                results.append(CheckResult(component, check.name, "failed", str(exc), seconds))
            continue
        seconds = time.perf_counter() - start
        if check.name in known:
            message = f"declared a known failure ({known[check.name]}) but passed; remove the declaration"
            results.append(CheckResult(component, check.name, "fixed", message, seconds))
        else:
            results.append(CheckResult(component, check.name, "passed", "", seconds))
    return results


def pytest_params(
    pairs: Iterable[tuple[Any, Check, str]], known: Callable[[Any], Mapping[str, str]]
) -> Any:
    """``pytest.mark.parametrize`` over (subject, check) with one id per check.

    Known failures become ``xfail`` with their reason; checks the capabilities rule out
    become ``skip`` with the reason, so neither is silent in ``pytest -ra``.
    """
    import pytest

    params = []
    for subject, check, label in pairs:
        marks = []
        reason = check.applies(subject)
        declared = known(subject)
        if reason is not None:
            marks.append(pytest.mark.skip(reason=f"{check.name} not applicable: {reason}"))
        elif check.name in declared:
            marks.append(pytest.mark.xfail(reason=f"known failure: {declared[check.name]}", strict=False))
        params.append(pytest.param(subject, check, id=f"{label}-{check.name}", marks=marks))
    return pytest.mark.parametrize("component, check", params)
