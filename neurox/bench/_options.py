"""What the benches' command lines share: a comma-separated list of names checked against the known ones."""
from __future__ import annotations

from collections.abc import Iterable


def chosen(value: str, known: Iterable[str], what: str) -> list[str]:
    """The names in ``value`` ("a,b,c"), in its order; SystemExit naming ``what`` for any not ``known``."""
    known = list(known)
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise SystemExit(f"neurox bench: unknown {what} {unknown}; known: {', '.join(known)}")
    return names
