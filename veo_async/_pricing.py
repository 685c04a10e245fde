"""Cost before paying: a price table per model, an estimate per request, one credit format.

Where the figures come from, plainly: the provider's API reference (``API-CONTRACT.md`` and
its OpenAPI files) publishes **no price table**; it only shows one example, a 5-second
``veo2`` clip whose ``meta.usage.credits_used`` is ``120000``. The table below is therefore
the one the bundled emulator charges (``veo_async.emulator``), anchored on that example:
24,000 credits per second for Veo2, 84,000 for Veo 3 / 3.1, 42,000 for their ``fast``
variants and 21,000 for Veo 3.1 Lite. Real prices differ between models, may depend on
options the emulator ignores (audio, resolution) and may change at any time: check the
provider's model and pricing pages at https://aimlapi.com before a large batch, and treat
``meta.usage.credits_used`` on a finished generation (``Generation.credits_used``) as the
only authoritative figure. Pass your own table with ``prices=`` when you know better
figures; :class:`ModelPrice` can express per-option multipliers (for example a cheaper
rate without audio) even though the default table uses none.

``estimate_credits`` raises :class:`UnknownModelPriceError` for a model with no price (it
lists the known ones and suggests the closest), rather than returning ``None``: a budget
check that silently counted an unknown model as free would let a batch overspend.

``format_credits`` prints credits the same way everywhere: thousands separators, no
exponent (``1,008,000``, not ``1.008e+06``).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._exceptions import VeoError
from ._models import VideoRequest

__all__ = [
    "PRICES",
    "ModelPrice",
    "UnknownModelPriceError",
    "estimate_credits",
    "estimate_total_credits",
    "format_credits",
]


@dataclass(frozen=True)
class ModelPrice:
    """How one model is charged: credits per clip second, times optional multipliers.

    ``multipliers`` maps a request field to ``{value: factor}``; when the request body sets
    that field to that value, the cost is multiplied by the factor (for example
    ``{"generate_audio": {False: 0.5}}``). A field the body leaves out uses no factor.
    """

    credits_per_second: float
    """Credits charged per second of video."""
    default_seconds: int
    """Clip length the server uses when the body has no ``duration``."""
    multipliers: Mapping[str, Mapping[Any, float]] = field(default_factory=dict)
    """Per-option factors: ``{field: {value: factor}}``."""

    def credits(self, body: Mapping[str, Any]) -> float:
        """Credits for one create body (``duration`` or the default, then the multipliers)."""
        seconds = _seconds(body.get("duration"), self.default_seconds)
        cost = self.credits_per_second * seconds
        for name, factors in self.multipliers.items():
            if name in body:
                value = body[name]
                for key, factor in factors.items():
                    # ``True == 1`` in Python: compare types too, so 1 never matches True.
                    if type(key) is type(value) and key == value:
                        cost *= factor
                        break
        return cost


def _seconds(duration: object, default: int) -> float:
    """The clip length of ``duration`` as sent (a number, or a numeric string), else default."""
    if isinstance(duration, bool):
        return float(default)
    if isinstance(duration, (int, float)) and math.isfinite(duration) and duration > 0:
        return float(duration)
    if isinstance(duration, str):
        text = duration.strip().lower().removesuffix("s")
        try:
            value = float(text)
        except ValueError:
            return float(default)
        if math.isfinite(value) and value > 0:
            return value
    return float(default)


_VEO2 = ModelPrice(24_000, 5)
_VEO3 = ModelPrice(84_000, 8)
_VEO3_FAST = ModelPrice(42_000, 8)
_LITE = ModelPrice(21_000, 8)

#: The default price table (model id -> :class:`ModelPrice`): the emulator's charges, which
#: are anchored on the provider's one published figure (veo2, 5 s: 120,000 credits). Not the
#: live prices: see the module docstring and https://aimlapi.com.
PRICES: Mapping[str, ModelPrice] = {
    "veo2": _VEO2,
    "veo2/image-to-video": _VEO2,
    "google/veo3": _VEO3,
    "google/veo-3.0-i2v": _VEO3,
    "google/veo-3.0-fast": _VEO3_FAST,
    "google/veo-3.0-i2v-fast": _VEO3_FAST,
    "google/veo-3.1-t2v": _VEO3,
    "google/veo-3.1-i2v": _VEO3,
    "google/veo-3.1-first-last-image-to-video": _VEO3,
    "google/veo-3.1-reference-to-video": _VEO3,
    "google/veo3-1-extend-video": ModelPrice(84_000, 7),
    "google/veo-3.1-t2v-fast": _VEO3_FAST,
    "google/veo-3.1-i2v-fast": _VEO3_FAST,
    "google/veo-3.1-first-last-image-to-video-fast": _VEO3_FAST,
    "google/veo3-1-fast-extend-video": ModelPrice(42_000, 7),
    "google/veo-3-1-lite-generate-preview": _LITE,
    "veo-3.1-lite-generate-001": _LITE,
}


class UnknownModelPriceError(VeoError, LookupError):
    """No price is known for a model; ``known`` lists the models that have one."""

    def __init__(self, model: str, known: Iterable[str]) -> None:
        self.model = model
        """The model asked about."""
        self.known = sorted(known)
        """Models with a price."""
        close = difflib.get_close_matches(model, self.known, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        super().__init__(
            f"no price is known for model {model!r}.{hint} Models with a price: "
            f"{', '.join(self.known)}. Pass prices={{...}} to estimate other models."
        )


def _body_of(request: VideoRequest | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(request, VideoRequest):
        return request.to_body()
    if isinstance(request, Mapping):
        body = dict(request)
        extra = body.pop("extra_body", None)
        if isinstance(extra, Mapping):
            body.update(extra)
        body.setdefault("model", "veo2")
        return body
    raise TypeError(f"expected a VideoRequest or a mapping of fields, got {type(request).__name__}")


def estimate_credits(
    request: VideoRequest | Mapping[str, Any],
    *,
    prices: Mapping[str, ModelPrice] | None = None,
) -> float:
    """Estimate the credits one create will cost, before sending it.

    ``request`` is a request model (its body as sent, ``extra_body`` included) or a mapping
    of body fields (``model`` defaults to ``"veo2"``, as in ``coerce_request``). The clip
    length is the body's ``duration``, else the model's default length. ``prices`` replaces
    the default :data:`PRICES` table. Raises :class:`UnknownModelPriceError` for a model
    with no price. The figures are the emulator's, not live prices (see the module notes).
    """
    body = _body_of(request)
    table = PRICES if prices is None else prices
    model = str(body.get("model"))
    price = table.get(model)
    if price is None:
        raise UnknownModelPriceError(model, table)
    return price.credits(body)


def estimate_total_credits(
    requests: Iterable[VideoRequest | Mapping[str, Any]],
    *,
    prices: Mapping[str, ModelPrice] | None = None,
) -> float:
    """The sum of :func:`estimate_credits` over ``requests`` (for a dry run or a budget)."""
    return math.fsum(estimate_credits(r, prices=prices) for r in requests)


def format_credits(credits: float | None) -> str:
    """Credits as text, the same everywhere: ``1,008,000``; never an exponent.

    Whole numbers get thousands separators; fractions keep at most two decimals
    (``1,234.5``). ``None`` and NaN print as ``unknown``, infinity as ``unlimited``.
    """
    if credits is None or (isinstance(credits, float) and math.isnan(credits)):
        return "unknown"
    if isinstance(credits, bool) or not isinstance(credits, (int, float)):
        raise TypeError(f"credits must be a number, got {type(credits).__name__}")
    if math.isinf(credits):
        return "unlimited" if credits > 0 else "-unlimited"
    if isinstance(credits, int):
        return f"{credits:,}"
    text = f"{credits:,.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
