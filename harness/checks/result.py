"""The outcome of one check: a verdict, the evidence it rests on, and a hint a person can act on."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class Verdict(enum.StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class CheckResult:
    name: str
    title: str
    verdict: Verdict
    summary: str
    evidence: list[str] = field(default_factory=list)
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = str(self.verdict)
        return data

    def explain(self) -> str:
        lines = [f"{self.title}: {self.verdict} - {self.summary}"]
        lines += [f"  evidence: {item}" for item in self.evidence]
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)
