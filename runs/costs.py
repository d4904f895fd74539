"""What model usage costs: a price table applied to token counts, in Decimal. No Django.

A face reads the price rows (``runs.pricing.price_table()``) and the usage rows (per
run, skill or bucket, by model) and asks a :class:`PriceTable` for the :class:`Cost`. The
cost is computed when it is read, never stored, so an edited price applies at once.

Which price prices a usage row (model name ``m`` at time ``t``, see :meth:`PriceTable.price_for`):

1. Only rows valid at ``t`` take part: ``valid_from <= t``.
2. A row whose name is exactly ``m`` beats every pattern.
3. Otherwise the patterns that match ``m`` (``*`` stands for any run of characters, every
   other character is literal; ``gpt-4o*`` matches ``gpt-4o`` and ``gpt-4o-mini``) compete:
   the longest literal prefix (the text before the first ``*``) wins, then the most literal
   characters, then the name in code-point order, so the choice never depends on row order.
4. Among the rows of the winning name, the latest ``valid_from`` wins; if several providers
   price the same name from the same time, the usage row's own provider is preferred, then
   the provider's name in order.

Token counts follow what the storage keeps (see the README's OTLP mapping): ``input_tokens``
includes ``cached_input_tokens`` and ``output_tokens`` includes ``thinking_tokens``, as
OpenAI and OpenTelemetry report them. Cached input is billed at the cached price instead of
the input price, thinking at the thinking price instead of the output price; a price left
empty (None) bills them at the input or output price, which is how most providers list
reasoning tokens (Anthropic's output_tokens include thinking too). A part larger than its
whole is capped at the whole (``cached`` at ``input``, ``thinking`` at ``output``), so a
cost is never negative. With the capping the cost is linear in each row's token counts:
summing rows before charging them (per bucket, per skill) gives the same exact amount as
charging each run, and with no thinking price set the split of output into thinking never
changes a cost.

Usage that cannot be priced (no model named, a model no row matches, or no row valid yet at
the step's time) is never counted as 0: the :class:`Cost` carries its step and token counts
and the names, and says ``partly_unpriced``.
"""

from __future__ import annotations

import bisect
import decimal
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

MILLION = Decimal(1_000_000)
DEFAULT_CURRENCY = "USD"
PATTERN_WILDCARD = "*"
# Token counts up to 1e18 times prices with 6 decimals stay exact at this precision.
_CONTEXT = decimal.Context(
    prec=60, rounding=decimal.ROUND_HALF_EVEN, traps=[decimal.InvalidOperation]
)


class PriceError(ValueError):
    """A price row that cannot be used (negative, not a number, no name, bad currency)."""


@dataclass(frozen=True)
class Price:
    """One row of the price table: prices per million tokens from ``valid_from`` on."""

    model: str
    valid_from: datetime
    input_per_million: Decimal
    output_per_million: Decimal
    cached_input_per_million: Decimal | None = None
    thinking_per_million: Decimal | None = None
    currency: str = DEFAULT_CURRENCY
    provider: str = ""
    note: str = ""

    @property
    def is_pattern(self) -> bool:
        return PATTERN_WILDCARD in self.model

    def check(self) -> None:
        """Raise PriceError naming the problem (the load command and the admin call this)."""
        if not self.model.strip():
            raise PriceError("model must not be empty")
        if self.model != self.model.strip():
            raise PriceError(f"model must not start or end with spaces: {self.model!r}")
        if not (len(self.currency) == 3 and self.currency.isascii() and self.currency.isupper()):
            raise PriceError(
                f"currency must be a three-letter code such as USD, not {self.currency!r}"
            )
        for name in (
            "input_per_million",
            "output_per_million",
            "cached_input_per_million",
            "thinking_per_million",
        ):
            value = getattr(self, name)
            if value is None and name in ("cached_input_per_million", "thinking_per_million"):
                continue
            if not isinstance(value, Decimal) or not value.is_finite():
                raise PriceError(f"{name} must be a decimal number, not {value!r}")
            if value < 0:
                raise PriceError(f"{name} must not be negative ({value})")
        if self.valid_from.tzinfo is None:
            raise PriceError("valid_from must carry a time zone")


@dataclass(frozen=True)
class Usage:
    """Tokens a model used: one step, or many summed (``steps``), at one time.

    ``at`` picks the price valid then; for rows summed over a run or a bucket it is the
    run's start or the bucket's start.
    """

    model: str
    at: datetime
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    thinking_tokens: int = 0
    steps: int = 1
    provider: str = ""

    @property
    def tokens(self) -> int:
        return max(self.input_tokens, 0) + max(self.output_tokens, 0)


@dataclass(frozen=True)
class Cost:
    """A sum of money per currency, and what could not be priced.

    ``amounts`` is sorted by currency and holds only currencies something was priced in.
    ``unpriced_models`` are the model names no price covered ("" for steps naming none).
    Costs add up (``a + b``, ``sum(costs, Cost())``).
    """

    amounts: tuple[tuple[str, Decimal], ...] = ()
    unpriced_steps: int = 0
    unpriced_tokens: int = 0
    unpriced_models: frozenset[str] = field(default_factory=frozenset)

    @property
    def partly_unpriced(self) -> bool:
        return self.unpriced_steps > 0 or self.unpriced_tokens > 0

    @property
    def is_empty(self) -> bool:
        """Nothing priced and nothing unpriced: no model usage at all."""
        return not self.amounts and not self.partly_unpriced

    def amount(self, currency: str = DEFAULT_CURRENCY) -> Decimal:
        return dict(self.amounts).get(currency, Decimal(0))

    def __add__(self, other: Cost) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        return Cost(
            amounts=_merged(self.amounts, other.amounts),
            unpriced_steps=self.unpriced_steps + other.unpriced_steps,
            unpriced_tokens=self.unpriced_tokens + other.unpriced_tokens,
            unpriced_models=self.unpriced_models | other.unpriced_models,
        )

    def __radd__(self, other):
        if other == 0:  # sum() starts from 0
            return self
        return self.__add__(other)

    def as_json(self) -> dict:
        """The API's cost object: the amount as an exact decimal string (never a float).

        ``amount``/``currency`` are the first currency's (USD when nothing was priced);
        ``amounts`` lists every currency when there are several. ``unpriced`` is
        ``partly_unpriced``; ``unpriced_steps`` and ``unpriced_models`` say what.
        """
        amounts = self.amounts or ((DEFAULT_CURRENCY, Decimal(0)),)
        body = {
            "amount": decimal_text(amounts[0][1]),
            "currency": amounts[0][0],
            "unpriced": self.partly_unpriced,
            "unpriced_steps": self.unpriced_steps,
            "unpriced_models": sorted(self.unpriced_models),
        }
        if len(amounts) > 1:
            body["amounts"] = [{"amount": decimal_text(a), "currency": c} for c, a in amounts]
        return body


def _merged(a, b) -> tuple[tuple[str, Decimal], ...]:
    totals = dict(a)
    for currency, value in b:
        totals[currency] = _CONTEXT.add(totals.get(currency, Decimal(0)), value)
    return tuple(sorted(totals.items()))


def decimal_text(value: Decimal) -> str:
    """An exact decimal as plain digits: no exponent, no trailing zeros ('0.000375', '12')."""
    if value == 0:
        return "0"
    text = format(value.normalize(_CONTEXT), "f")
    return text


def display(cost: Cost) -> str:
    """A cost for people: '0.0123 USD', '1.50 USD + 2.00 EUR', 'unpriced'; with
    ' (partly unpriced)' when some usage had no price. Plain text; faces escape it.

    Amounts of 1 and more show cents; smaller ones four significant decimals at most, and
    '<0.0001' for a positive amount that would round to zero (never a misleading 0).
    """
    if cost.is_empty:
        return "—"
    if not cost.amounts:
        return "unpriced"
    text = " + ".join(f"{money(amount)} {currency}" for currency, amount in cost.amounts)
    return f"{text} (partly unpriced)" if cost.partly_unpriced else text


def money(amount: Decimal) -> str:
    if amount >= 1:
        return f"{amount.quantize(Decimal('0.01'), context=_CONTEXT):,}"
    if amount == 0:
        return "0"
    if amount < Decimal("0.0001"):
        return "<0.0001"
    return format(amount.quantize(Decimal("0.0001"), context=_CONTEXT), "f")


def literal_prefix(name: str) -> str:
    return name.split(PATTERN_WILDCARD, 1)[0]


def pattern_matches(pattern: str, model: str) -> bool:
    """``*`` matches any run of characters (none too); all else is literal, case included."""
    parts = pattern.split(PATTERN_WILDCARD)
    if len(parts) == 1:
        return pattern == model
    first, *middle, last = parts
    if not model.startswith(first) or not model.endswith(last):
        return False
    if len(first) + len(last) > len(model):
        return False
    position = len(first)
    end = len(model) - len(last)
    for part in middle:
        found = model.find(part, position, end)
        if found < 0:
            return False
        position = found + len(part)
    return True


def _specificity(pattern: str) -> tuple:
    """Sort key: longest literal prefix first, then most literal characters, then name."""
    return (-len(literal_prefix(pattern)), -len(pattern.replace(PATTERN_WILDCARD, "")), pattern)


class PriceTable:
    """The price rows, indexed for many look-ups (a page prices hundreds of usage rows).

    Exact names are a dict; patterns are kept in precedence order and matched once per
    model name (memoized), so pricing N rows of K models costs K pattern scans plus N
    binary searches over valid_from.
    """

    def __init__(self, prices: Iterable[Price] = ()):
        by_name: dict[str, list[Price]] = {}
        for price in prices:
            by_name.setdefault(price.model, []).append(price)
        self._rows: dict[str, list[Price]] = {}
        self._starts: dict[str, list[datetime]] = {}
        for name, rows in by_name.items():
            rows.sort(key=lambda p: (p.valid_from, p.provider))
            self._rows[name] = rows
            self._starts[name] = [p.valid_from for p in rows]
        self._patterns = sorted((n for n in self._rows if PATTERN_WILDCARD in n), key=_specificity)
        self._candidates: dict[str, list[str]] = {}

    def __len__(self) -> int:
        return sum(len(rows) for rows in self._rows.values())

    def names_for(self, model: str) -> list[str]:
        """The table's names that match ``model``, in precedence order (exact first)."""
        names = self._candidates.get(model)
        if names is None:
            names = [model] if model in self._rows and PATTERN_WILDCARD not in model else []
            names += [p for p in self._patterns if pattern_matches(p, model)]
            self._candidates[model] = names
        return names

    def price_for(self, model: str, at: datetime, provider: str = "") -> Price | None:
        """The price of ``model`` at ``at`` by the module's rules, or None."""
        if not model:
            return None
        for name in self.names_for(model):
            starts = self._starts[name]
            index = bisect.bisect_right(starts, at)
            if index == 0:
                continue  # this name has no row valid yet: a less specific one may
            latest = starts[index - 1]
            rows = [p for p in self._rows[name][:index] if p.valid_from == latest]
            own = [p for p in rows if provider and p.provider == provider]
            return (own or rows)[0]
        return None

    def cost_of(self, usage: Usage) -> Cost:
        price = self.price_for(usage.model, usage.at, usage.provider)
        if price is None:
            return Cost(
                unpriced_steps=max(usage.steps, 0),
                unpriced_tokens=usage.tokens,
                unpriced_models=frozenset([usage.model]),
            )
        return Cost(amounts=((price.currency, charge(price, usage)),))

    def cost(self, usages: Iterable[Usage]) -> Cost:
        """The sum of every row's cost."""
        amounts: dict[str, Decimal] = {}
        steps = tokens = 0
        models: set[str] = set()
        for usage in usages:
            price = self.price_for(usage.model, usage.at, usage.provider)
            if price is None:
                steps += max(usage.steps, 0)
                tokens += usage.tokens
                models.add(usage.model)
                continue
            value = charge(price, usage)
            amounts[price.currency] = _CONTEXT.add(amounts.get(price.currency, Decimal(0)), value)
        return Cost(tuple(sorted(amounts.items())), steps, tokens, frozenset(models))

    def costs_by(self, usages: Mapping[object, Iterable[Usage]]) -> dict[object, Cost]:
        """One Cost per key (run id, skill, bucket start) of ``usages``."""
        return {key: self.cost(rows) for key, rows in usages.items()}

    def cost_at(self, model_usages: Iterable, at: datetime) -> Cost:
        """The cost of summed usage rows priced at one time (a run's start, a bucket's).

        ``model_usages`` are any objects with ``model``, ``steps``, ``input_tokens``,
        ``output_tokens``, ``cached_input_tokens`` and ``thinking_tokens`` attributes
        (``runs.selectors.ModelUsage``); a missing cached or thinking count is 0.
        """
        return self.cost(usage_from(row, at) for row in model_usages)


def usage_from(row, at: datetime) -> Usage:
    """A Usage from a row with the ModelUsage attributes (see PriceTable.cost_at)."""
    return Usage(
        model=row.model,
        at=at,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        cached_input_tokens=getattr(row, "cached_input_tokens", 0),
        thinking_tokens=getattr(row, "thinking_tokens", 0),
        steps=getattr(row, "steps", 1),
        provider=getattr(row, "provider", ""),
    )


def charge(price: Price, usage: Usage) -> Decimal:
    """The exact cost of ``usage`` at ``price`` (see the module docstring for the parts)."""
    c = _CONTEXT
    inp = max(usage.input_tokens, 0)
    out = max(usage.output_tokens, 0)
    cached = min(max(usage.cached_input_tokens, 0), inp)
    thinking = min(max(usage.thinking_tokens, 0), out)
    cached_price = (
        price.input_per_million
        if price.cached_input_per_million is None
        else price.cached_input_per_million
    )
    thinking_price = (
        price.output_per_million
        if price.thinking_per_million is None
        else price.thinking_per_million
    )
    total = c.add(
        c.add(
            c.multiply(Decimal(inp - cached), price.input_per_million),
            c.multiply(Decimal(cached), cached_price),
        ),
        c.add(
            c.multiply(Decimal(out - thinking), price.output_per_million),
            c.multiply(Decimal(thinking), thinking_price),
        ),
    )
    return c.divide(total, MILLION)


# --- price files ----------------------------------------------------------------------------

PRICE_FIELDS = (
    "input_per_million",
    "output_per_million",
    "cached_input_per_million",
    "thinking_per_million",
)
ENTRY_KEYS = {"model", "provider", "currency", "valid_from", "note", *PRICE_FIELDS}


def load_price_text(text: str) -> list[Price]:
    """A price file's prices: a JSON list of entries, or an object with a ``prices`` list
    (and any other keys, such as ``as_of`` and ``source``). Numbers are read as Decimal,
    never float. Raises PriceError naming the entry (``entry 3 (gpt-4o)``) and the problem."""
    try:
        document = json.loads(text, parse_float=Decimal, parse_int=Decimal)
    except ValueError as problem:
        raise PriceError(f"not JSON: {problem}") from problem
    entries = document.get("prices") if isinstance(document, dict) else document
    if not isinstance(entries, list):
        raise PriceError('expected a JSON list of prices or an object with a "prices" list')
    prices = [price_from_entry(entry, index) for index, entry in enumerate(entries, 1)]
    seen: dict[tuple, int] = {}
    for index, price in enumerate(prices, 1):
        key = (price.model, price.provider, price.valid_from)
        if key in seen:
            raise PriceError(
                f"entry {index} ({price.model}): same model, provider and valid_from as "
                f"entry {seen[key]}"
            )
        seen[key] = index
    return prices


def price_from_entry(entry, index: int) -> Price:
    """One entry of a price file as a checked Price (see load_price_text)."""
    name = entry.get("model") if isinstance(entry, dict) else None
    label = f"entry {index}" + (f" ({name})" if isinstance(name, str) and name else "")
    try:
        if not isinstance(entry, dict):
            raise PriceError("must be an object")
        unknown = sorted(set(entry) - ENTRY_KEYS)
        if unknown:
            raise PriceError(f"unknown key {unknown[0]!r}")
        for key in ("model", "input_per_million", "output_per_million", "valid_from"):
            if key not in entry:
                raise PriceError(f"{key} is missing")
        for key in ("model", "provider", "currency", "valid_from", "note"):
            if key in entry and not isinstance(entry[key], str):
                raise PriceError(f"{key} must be a string")
        price = Price(
            model=entry["model"],
            provider=entry.get("provider", ""),
            currency=entry.get("currency", DEFAULT_CURRENCY),
            valid_from=_instant(entry["valid_from"]),
            note=entry.get("note", ""),
            **{key: _decimal(entry.get(key), key) for key in PRICE_FIELDS},
        )
        price.check()
    except PriceError as problem:
        raise PriceError(f"{label}: {problem}") from problem
    return price


def _decimal(value, key: str) -> Decimal | None:
    if value is None:
        if key in ("input_per_million", "output_per_million"):
            raise PriceError(f"{key} is missing")
        return None
    if isinstance(value, bool):
        raise PriceError(f"{key} must be a number")
    if isinstance(value, str):
        try:
            value = Decimal(value.strip())
        except decimal.InvalidOperation as problem:
            raise PriceError(f"{key} must be a number, not {value!r}") from problem
    if not isinstance(value, Decimal) or not value.is_finite():
        raise PriceError(f"{key} must be a number")
    if value.as_tuple().exponent < -6 or value.adjusted() >= 8:
        raise PriceError(f"{key} must have at most 8 digits before the point and 6 after")
    return value


def _instant(text: str) -> datetime:
    """'2025-04-14' (midnight UTC) or an ISO 8601 time with a zone."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as problem:
        raise PriceError(f"valid_from is not an ISO date: {text!r}") from problem
    if value.tzinfo is None:
        if len(text.strip()) > 10:
            raise PriceError(f"valid_from needs a time zone (Z or +00:00): {text!r}")
        value = value.replace(tzinfo=UTC)
    return value
