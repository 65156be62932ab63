"""Query-service filter operators and ``filterExpression`` parsing, evaluated in Python.

Kept apart from the engine so each operator's semantics (especially with ``null`` values) are
defined once; the SQL push-down in :mod:`query_engine` mirrors exactly these rules:
a ``null`` value matches ``$eq: null``, ``$ne`` anything else, ``$notIn`` and the negated text
operators; every ordering/range/text operator is false on ``null``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

OPERATORS = (
    "$eq",
    "$ne",
    "$lt",
    "$lte",
    "$gt",
    "$gte",
    "$in",
    "$notIn",
    "$between",
    "$notBetween",
    "$contains",
    "$notContains",
    "$startsWith",
    "$notStartsWith",
    "$endsWith",
    "$notEndsWith",
    "$has",
)
LIST_OPERATORS = frozenset({"$in", "$notIn"})
RANGE_OPERATORS = frozenset({"$between", "$notBetween"})
TEXT_OPERATORS = frozenset(
    {
        "$contains",
        "$notContains",
        "$startsWith",
        "$notStartsWith",
        "$endsWith",
        "$notEndsWith",
    }
)
NULLABLE_OPERATORS = frozenset({"$eq", "$ne"})

Predicate = Callable[[Any], bool]


def _safe(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def run(value: Any, target: Any) -> bool:
        if value is None or target is None:
            return False
        try:
            return compare(value, target)
        except TypeError:
            return False

    return run


def _text(check: Callable[[str, str], bool]) -> Callable[[Any, Any], bool]:
    def run(value: Any, target: Any) -> bool:
        if value is None or target is None:
            return False
        return check(str(value), str(target))

    return run


def _has(value: Any, target: Any) -> bool:
    return isinstance(value, list) and target in value


_BINARY: dict[str, Callable[[Any, Any], bool]] = {
    "$eq": lambda v, t: v == t,
    "$ne": lambda v, t: v != t,
    "$lt": _safe(lambda v, t: v < t),
    "$lte": _safe(lambda v, t: v <= t),
    "$gt": _safe(lambda v, t: v > t),
    "$gte": _safe(lambda v, t: v >= t),
    "$contains": _text(lambda v, t: t in v),
    "$startsWith": _text(lambda v, t: v.startswith(t)),
    "$endsWith": _text(lambda v, t: v.endswith(t)),
    "$has": _has,
}


def predicate(operator: str, target: Any, normalise: Callable[[Any], Any]) -> Predicate:
    """A test of one (already normalised) field value against a filter's target.

    ``normalise`` maps raw values to comparable ones (numbers for amounts, ints for keys,
    canonical timestamps, lower case when comparisons are case-insensitive); it is applied to
    the target here and to each record value by the caller.
    """
    if operator in LIST_OPERATORS:
        members = {_hashable(normalise(t)) for t in target}
        if operator == "$in":
            return lambda v: v is not None and _hashable(v) in members
        return lambda v: v is None or _hashable(v) not in members
    if operator in RANGE_OPERATORS:
        low, high = normalise(target[0]), normalise(target[1])
        inside = _safe(lambda v, _t: low <= v <= high)
        if operator == "$between":
            return lambda v: inside(v, True)
        return lambda v: v is not None and not inside(v, True)
    if operator.startswith("$not") and operator in TEXT_OPERATORS:
        positive = _BINARY["$" + operator[4].lower() + operator[5:]]
        norm_target = normalise(target)
        return lambda v: v is None or not positive(v, norm_target)
    if operator == "$has":
        norm_target = normalise(target)
        return lambda v: isinstance(v, list) and norm_target in [normalise(x) for x in v]
    compare = _BINARY[operator]
    norm_target = normalise(target) if target is not None else None
    return lambda v: compare(v, norm_target)


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


_TOKEN_RE = re.compile(r"\s*(\d+|\(|\)|and\b|or\b)", re.IGNORECASE)


class ExpressionError(ValueError):
    """``filterExpression`` is malformed or refers to a filter that does not exist."""


def _tokens(text: str) -> list[str]:
    """``filterExpression`` split into lower-cased tokens: numbers, and/or, parentheses."""
    tokens: list[str] = []
    pos = 0
    stripped = text.rstrip()
    while pos < len(stripped):
        match = _TOKEN_RE.match(stripped, pos)
        if not match:
            raise ExpressionError(f"unexpected text at position {pos + 1}: {text!r}")
        tokens.append(match.group(1).lower())
        pos = match.end()
    return tokens


def parse_expression(text: str, count: int) -> Callable[[Sequence[bool]], bool]:
    """Compile ``"(1 and 2) or 3"`` into a function of the filters' results (1-based).

    ``and`` binds tighter than ``or``, as in SQL; every filter number must exist.
    """
    tokens = _tokens(text)
    if not tokens:
        raise ExpressionError("empty filterExpression")
    index = 0

    def peek() -> str | None:
        return tokens[index] if index < len(tokens) else None

    def take() -> str:
        nonlocal index
        if index >= len(tokens):
            raise ExpressionError(f"unexpected end of filterExpression {text!r}")
        index += 1
        return tokens[index - 1]

    def parse_or() -> Callable[[Sequence[bool]], bool]:
        parts = [parse_and()]
        while peek() == "or":
            take()
            parts.append(parse_and())
        if len(parts) == 1:
            return parts[0]
        return lambda r: any(p(r) for p in parts)

    def parse_and() -> Callable[[Sequence[bool]], bool]:
        parts = [parse_atom()]
        while peek() == "and":
            take()
            parts.append(parse_atom())
        if len(parts) == 1:
            return parts[0]
        return lambda r: all(p(r) for p in parts)

    def parse_atom() -> Callable[[Sequence[bool]], bool]:
        token = take()
        if token == "(":  # noqa: S105 - a parenthesis, not a secret
            inner = parse_or()
            if take() != ")":
                raise ExpressionError(f"missing ')' in filterExpression {text!r}")
            return inner
        if token.isdigit():
            number = int(token)
            if not 1 <= number <= count:
                raise ExpressionError(f"filterExpression refers to filter {number}, not defined")
            return lambda r: r[number - 1]
        raise ExpressionError(f"unexpected {token!r} in filterExpression {text!r}")

    result = parse_or()
    if index != len(tokens):
        raise ExpressionError(f"unexpected {tokens[index]!r} in filterExpression {text!r}")
    return result


def uses_only_and(text: str | None) -> bool:
    """True when the expression is a plain conjunction (so filters may be pushed to SQL)."""
    return text is None or re.search(r"\bor\b", text, re.IGNORECASE) is None


def expression_sql(
    text: str, conditions: Sequence[tuple[str, Sequence[Any]]]
) -> tuple[str, list[Any]]:
    """The SQL form of a (validated) ``filterExpression`` whose every filter has one.

    Each filter number becomes its SQL condition in parentheses, ``and``/``or``/parentheses are
    kept (SQL gives ``and`` the same precedence over ``or``), and the parameters are bound in
    order of appearance, so a filter named twice binds its values twice. ``conditions[n - 1]``
    is the SQL fragment and parameters of filter ``n``. Only fixed fragments are emitted; no
    text of the request reaches the SQL. Filters the expression does not name are ignored, as
    in the Python evaluation.
    """
    parts: list[str] = []
    params: list[Any] = []
    for token in _tokens(text):
        if token.isdigit():
            number = int(token)
            if not 1 <= number <= len(conditions):
                raise ExpressionError(f"filterExpression refers to filter {number}, not defined")
            sql, values = conditions[number - 1]
            parts.append(f"({sql})")
            params.extend(values)
        elif token in ("and", "or"):
            parts.append(f" {token.upper()} ")
        else:
            parts.append(token)
    return "".join(parts), params
