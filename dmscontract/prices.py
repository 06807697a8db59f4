"""The deployment's price table (setting ``PRICE_TABLE``) and what a VM size's name says of its cores.

A run's manifest states node- and core-hours always, and an estimated cost only when the
table prices every VM size and priority the run used: no price is ever guessed. The table
is JSON, so that an operator can paste what their agreement says::

    {"currency": "USD",
     "vm_sizes": {"standard_d2s_v3": {"dedicated": 0.096, "low_priority": 0.0192},
                  "standard_hb120rs_v3": {"dedicated": 3.6, "cores": 120}}}

Prices are per node-hour. ``cores`` overrides what the size's name gives (Azure's naming puts
the vCPU count after the family letters, and a constrained size's active count after a dash:
``Standard_E64-16ds_v4`` has 16).
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

PRIORITIES = ("dedicated", "low_priority")
_SIZE = re.compile(r"^(?:standard_|basic_)?[a-z]+(\d+)(?:-(\d+))?", re.IGNORECASE)


class PriceTableError(ValueError):
    """The table does not fit; ``errors`` lists ``PRICE_TABLE.path: reason``."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


def cores_from_name(vm_size: str) -> int | None:
    """vCPUs by Azure's VM size naming (``Standard_D4s_v5`` -> 4), None when the name does not say."""
    match = _SIZE.match(vm_size or "")
    if not match:
        return None
    return int(match.group(2) or match.group(1)) or None


@dataclass(frozen=True)
class SizePrice:
    dedicated: float | None = None
    low_priority: float | None = None
    cores: int | None = None


@dataclass(frozen=True)
class PriceTable:
    currency: str | None = None
    sizes: Mapping[str, SizePrice] = field(default_factory=lambda: MappingProxyType({}))

    def hourly(self, vm_size: str, priority: str) -> float | None:
        size = self.sizes.get(vm_size.lower())
        return getattr(size, priority, None) if size is not None and priority in PRIORITIES else None

    def cores(self, vm_size: str) -> int | None:
        size = self.sizes.get(vm_size.lower())
        return (size.cores if size is not None and size.cores else None) or cores_from_name(vm_size)

    @classmethod
    def parse(cls, text: str | None) -> "PriceTable":
        """The table from the setting's text (empty: no prices); ``PriceTableError`` naming each problem."""
        if not text or not text.strip():
            return cls()
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise PriceTableError([f"PRICE_TABLE: is not JSON: {exc}"]) from None
        if not isinstance(document, Mapping):
            raise PriceTableError(["PRICE_TABLE: must be a JSON object with currency and vm_sizes"])
        errors = [f"PRICE_TABLE.{k}: is not a field here (currency, vm_sizes)" for k in document if k not in ("currency", "vm_sizes")]
        currency = document.get("currency")
        if currency is not None and (not isinstance(currency, str) or not currency.strip()):
            errors.append("PRICE_TABLE.currency: must be text such as 'USD'")
        sizes: dict[str, SizePrice] = {}
        raw_sizes = document.get("vm_sizes") or {}
        if not isinstance(raw_sizes, Mapping):
            errors.append("PRICE_TABLE.vm_sizes: must map VM sizes to their prices")
            raw_sizes = {}
        for name, entry in raw_sizes.items():
            where = f"PRICE_TABLE.vm_sizes.{name}"
            if not isinstance(entry, Mapping):
                errors.append(f"{where}: must be an object with dedicated, low_priority and/or cores")
                continue
            values: dict[str, Any] = {}
            for key, value in entry.items():
                if key in PRIORITIES:
                    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                        errors.append(f"{where}.{key}: must be a price per node-hour, a number of at least 0")
                    else:
                        values[key] = float(value)
                elif key == "cores":
                    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                        errors.append(f"{where}.cores: must be a whole number of at least 1")
                    else:
                        values[key] = value
                else:
                    errors.append(f"{where}.{key}: is not a field here (dedicated, low_priority, cores)")
            sizes[str(name).lower()] = SizePrice(**values)
        if errors:
            raise PriceTableError(sorted(errors))
        return cls(currency=currency, sizes=MappingProxyType(sizes))
