"""The table, the targets and what the numbers mean."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._floor import Floor
from ._plan import LABELS, MEMORY_JUDGED_FROM, Scenario

MIB = 1024 * 1024

HEADER = (
    "scenario",
    "client",
    "texts",
    "texts/s",
    "of limit",
    "vs sequential",
    "vs gather",
    "CPU s/Mfloat",
    "vs floor",
    "peak MiB",
    "vs array",
)


@dataclass(frozen=True)
class Row:
    """The derived numbers of one measured row."""

    scenario: Scenario
    client: str
    count: int
    seconds: float
    user: float
    system: float
    peak_delta: int | None
    error: str | None
    server_cpu: float | None = None
    floor: float | None = None  # measured in the row's own process

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    @property
    def floats(self) -> int:
        return self.count * self.scenario.dims

    @property
    def cpu(self) -> float:
        return self.user + self.system

    @property
    def cpu_per_mfloat(self) -> float:
        return self.cpu / self.floats * 1e6

    @property
    def micros_per_request(self) -> float:
        return self.cpu / self.count * self.scenario.per_request * 1e6

    @property
    def array_bytes(self) -> int:
        return self.floats * 4


def build_rows(
    plan: list[Scenario], results: Mapping[str, dict[str, Any]]
) -> dict[tuple[str, str], Row]:
    """Rows by (scenario key, client) from the children's JSON lines."""
    rows = {}
    for scenario in plan:
        for client in scenario.clients:
            result = results.get(f"{scenario.key}/{client}", {"error": "no result"})
            count = scenario.count(client)
            error = result.get("error")
            if error is None and result["shape"] != [count, scenario.dims]:
                error = f"wrong shape {result['shape']}"
            if error is None and not result["finite"]:
                error = "non-finite values"
            peak, baseline = result.get("peak"), result.get("baseline")
            rows[scenario.key, client] = Row(
                scenario,
                client,
                count,
                float(result.get("seconds", 0.0)),
                float(result.get("user", 0.0)),
                float(result.get("sys", 0.0)),
                peak - baseline if peak is not None and baseline is not None else None,
                error,
                result.get("server_cpu"),
                result.get("floor"),
            )
    return rows


def _ratio(value: float) -> str:
    return f"{value:.1f}×" if value < 100 else f"{value:.0f}×"


def table(
    plan: list[Scenario],
    rows: Mapping[tuple[str, str], Row],
    floors: Mapping[str, Floor],
) -> list[str]:
    """The one table, as Markdown lines."""
    lines = [
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join(["---", "---"] + ["---:"] * (len(HEADER) - 2)) + "|",
    ]
    for scenario in plan:
        reference = floors[scenario.model].seconds_per_mfloat
        lines.append(
            f"| {scenario.title} | limit: {scenario.limit_text} | "
            f"| {scenario.limit:,.0f} | 100% | | | {reference:.3f} (floor) | 1.0× "
            "| | |"
        )
        sequential = rows[scenario.key, "es-seq"]
        gather = rows[scenario.key, "es-gather"]
        for client in scenario.clients:
            row = rows[scenario.key, client]
            cells = ["", LABELS[client], f"{row.count:,}"]
            if row.error:
                cells += [f"error: {row.error}"] + [""] * (len(HEADER) - 4)
            else:
                memory = ["n/a", "n/a"]
                if row.peak_delta is not None:
                    memory = [
                        f"{row.peak_delta / MIB:.1f}",
                        _ratio(row.peak_delta / row.array_bytes),
                    ]
                cells += [
                    f"{row.rate:,.0f}",
                    f"{row.rate / scenario.limit:.0%}",
                    _ratio(row.rate / sequential.rate) if sequential.rate else "",
                    _ratio(row.rate / gather.rate) if gather.rate else "",
                    f"{row.cpu_per_mfloat:.3f}",
                    _ratio(row.cpu_per_mfloat / (row.floor or reference)),
                    *memory,
                ]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


@dataclass(frozen=True)
class Check:
    """One target, judged on one row."""

    target: str
    where: str
    passed: bool | None  # None: not judged, with the reason in ``detail``
    detail: str

    def line(self) -> str:
        verdict = {True: "PASS", False: "FAIL", None: "N/A "}[self.passed]
        return f"- {verdict} {self.target} — {self.where}: {self.detail}"


def parse_ceiling(scenario: Scenario, floor: Floor) -> float:
    """Texts per second one core reaches doing nothing but the floor's parsing."""
    return 1e6 / (floor.seconds_per_mfloat * scenario.dims)


def _throughput(
    scenario: Scenario, row: Row, probe: Row | None, ceiling: float
) -> Check:
    share = row.rate / scenario.limit
    where = f"{scenario.title}, {LABELS[row.client]}"
    if scenario.limit > ceiling:
        return Check(
            "≥ 90% of the limit",
            where,
            None,
            f"the limit, {scenario.limit:,.0f} texts/s, is above what one core can "
            f"parse at the floor ({ceiling:,.0f} texts/s): the client is CPU-bound; "
            f"reached {row.rate:,.0f} = {row.rate / ceiling:.0%} of that ceiling"
            + _bare(probe, ceiling)
            + _busy(row),
        )
    detail = f"{row.rate:,.0f} of {scenario.limit:,.0f} texts/s ({share:.0%})"
    if share < 0.9:
        detail += _bare(probe, scenario.limit) + _busy(row)
    return Check("≥ 90% of the limit", where, share >= 0.9, detail)


def _bare(probe: Row | None, reference: float) -> str:
    """What the bare client reached against the same server, if it ran."""
    if probe is None or probe.error:
        return ""
    return (
        f"; a bare client with no library reached {probe.rate:,.0f} "
        f"({probe.rate / reference:.0%}) against the same server"
    )


def _busy(row: Row) -> str:
    """How busy the client and the server process were, as shares of one core."""
    if row.server_cpu is None or not row.seconds:
        return ""
    return (
        f"; the client used {row.cpu / row.seconds:.0%} of a core and the server "
        f"process {row.server_cpu / row.seconds:.0%} (of {os.cpu_count()} cores)"
    )


def _cpu(
    scenario: Scenario, row: Row, floor: Floor, others: list[Row], probe: Row | None
) -> Check:
    reference = row.floor or floor.seconds_per_mfloat
    over = row.cpu_per_mfloat / reference
    detail = f"{row.cpu_per_mfloat:.3f} vs {reference:.3f} s/Mfloat ({over:.1f}×)"
    if over > 1.5 and scenario.per_request == 1:
        floor_micros = reference * scenario.dims
        detail += (
            f": {row.micros_per_request:.0f} µs of CPU per one-text request "
            f"({row.system / row.count * 1e6:.0f} µs of it in the kernel) against "
            f"{floor_micros:.0f} µs of parsing; the official clients spend "
            + " and ".join(f"{other.micros_per_request:.0f} µs" for other in others)
        )
        if probe is not None and not probe.error:
            detail += (
                f", a bare client with no library {probe.micros_per_request:.0f} µs "
                f"({probe.cpu_per_mfloat / (probe.floor or reference):.1f}× the "
                "floor)"
            )
        detail += ": the HTTP exchange, not the parsing, is the cost of a request"
    elif over > 1.5 and probe is not None and not probe.error:
        detail += (
            f"; a bare client with no library: "
            f"{probe.cpu_per_mfloat / (probe.floor or reference):.1f}× its floor"
        )
    return Check(
        "CPU ≤ 1.5× the parsing floor",
        f"{scenario.title}, {LABELS[row.client]}",
        over <= 1.5,
        detail,
    )


def _memory(scenario: Scenario, row: Row) -> Check:
    where = f"{scenario.title}, {LABELS[row.client]}"
    if row.peak_delta is None:
        return Check("peak memory ≤ 1.3× the array", where, None, "needs Linux")
    ratio = row.peak_delta / row.array_bytes
    detail = (
        f"{row.peak_delta / MIB:.1f} MiB over the baseline for a "
        f"{row.array_bytes / MIB:.1f} MiB array ({ratio:.2f}×)"
    )
    if row.array_bytes < MEMORY_JUDGED_FROM:
        return Check(
            "peak memory ≤ 1.3× the array",
            where,
            None,
            detail + f"; arrays under {MEMORY_JUDGED_FROM // MIB} MiB are not judged, "
            "the client's fixed cost (threads, connections, an answer in flight) "
            "outweighs them",
        )
    return Check("peak memory ≤ 1.3× the array", where, ratio <= 1.3, detail)


def checks(
    plan: list[Scenario],
    rows: Mapping[tuple[str, str], Row],
    floors: Mapping[str, Floor],
) -> list[Check]:
    """Every target on every row it applies to."""
    found = []
    for scenario in plan:
        floor = floors[scenario.model]
        ceiling = parse_ceiling(scenario, floor)
        sequential = rows[scenario.key, "es-seq"]
        probe = rows.get((scenario.key, "probe"))
        others = [
            rows[scenario.key, name]
            for name in ("es-seq", "es-gather")
            if not rows[scenario.key, name].error
        ]
        for client in ("lib-sync", "lib-async"):
            row = rows[scenario.key, client]
            if row.error:
                where = f"{scenario.title}, {LABELS[client]}"
                found.append(Check("runs", where, False, row.error))
                continue
            found.append(_throughput(scenario, row, probe, ceiling))
            if scenario.latency_ms == 20 and not scenario.rpm and sequential.rate:
                speedup = row.rate / sequential.rate
                found.append(
                    Check(
                        "≥ 10× the sequential official client",
                        f"{scenario.title}, {LABELS[client]}",
                        speedup >= 10,
                        f"{speedup:.1f}×",
                    )
                )
            found.append(_cpu(scenario, row, floor, others, probe))
            found.append(_memory(scenario, row))
    return found
