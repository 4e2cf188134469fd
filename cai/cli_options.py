"""click option callbacks shared by the ``cai-hub`` command groups (cai, cdm, daad)."""
from __future__ import annotations

import click


def csv_option(ctx, param, value) -> tuple[str, ...]:
    """``--opt a,b --opt c`` (or one string) -> ``("a", "b", "c")``; None -> ``()``."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    return tuple(v.strip() for part in value for v in part.split(",") if v.strip())


def quota_option(ctx, param, value) -> tuple[int, int, int]:
    """``"4,3,3"`` -> ``(4, 3, 3)``: large, medium, small per normal image (non-negative, positive sum)."""
    try:
        parts = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter("expected three integers, e.g. 4,3,3") from None
    if len(parts) != 3 or min(parts) < 0 or sum(parts) == 0:
        raise click.BadParameter("expected three non-negative integers (large,medium,small) with a positive sum")
    return parts


def mode_option(ctx, param, value) -> str:
    """An injection mode, or several joined by ``+`` (checked against :data:`cai.engine.config.MODES`)."""
    from .engine.config import MODES

    parts = value.split("+")
    if not parts or any(p not in MODES for p in parts) or len(set(parts)) != len(parts):
        raise click.BadParameter(f"expected one of {', '.join(MODES)} or several joined by '+', e.g. normal+paste; "
                                 f"got {value!r}")
    return value


def weights_option(ctx, param, value) -> tuple[float, ...] | None:
    """``"1,3"`` -> ``(1.0, 3.0)``: relative weights (non-negative, positive sum); None stays None."""
    if value is None:
        return None
    try:
        parts = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, e.g. 1,3; got {value!r}") from None
    if not parts or any(not (p >= 0 and p < float("inf")) for p in parts) or sum(parts) <= 0:
        raise click.BadParameter(f"expected non-negative numbers with a positive sum, e.g. 1,3; got {value!r}")
    return parts


def require_extra(extra: str, what: str) -> None:
    """:func:`cai.extras.require` turned into a one-line click error (exit 1)."""
    from .extras import MissingExtra, require
    try:
        require(extra, what)
    except MissingExtra as exc:
        raise click.ClickException(str(exc)) from None
