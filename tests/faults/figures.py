"""What the fault suite did and found, added up across its tests and printed at the end."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Figures:
    statuses: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    rows_checked: int = 0
    lost: int = 0  # answered as created, not in the database
    phantom: int = 0  # refused, yet in the database
    leaked: int = 0  # connections checked out, or left on the server, after a scenario
    notes: list[str] = field(default_factory=list)

    @property
    def used(self) -> bool:
        return bool(self.statuses or self.faults)

    def answer(self, status: int | None) -> None:
        self.statuses["no answer" if status is None else str(status)] += 1

    def fault(self, name: str, times: int = 1) -> None:
        self.faults[name] += times

    def lines(self) -> list[str]:
        sent = sum(self.statuses.values())
        by_status = ", ".join(f"{k}: {v:,}" for k, v in sorted(self.statuses.items()))
        faults = ", ".join(f"{k} x{v}" for k, v in sorted(self.faults.items())) or "none"
        return [
            f"requests sent: {sent:,} ({by_status})",
            f"500s: {self.statuses.get('500', 0)}",
            f"faults injected: {sum(self.faults.values())} ({faults})",
            f"rows checked: {self.rows_checked:,}; lost: {self.lost}; phantom: {self.phantom}",
            f"connections leaked: {self.leaked}",
            *self.notes,
        ]


FIGURES = Figures()
