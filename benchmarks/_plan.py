"""What the benchmark runs: scenarios, the clients compared, and the limit of each."""

from __future__ import annotations

import math
from dataclasses import dataclass

from es_inference._batch import DEFAULT_CONCURRENCY

TITAN = "amazon.titan-embed-text-v2:0"
COHERE = "cohere.embed-english-v3"

#: Texts per request and dimensions of each model on the local server.
MODELS = {TITAN: ("amazontitan", 1, 1024), COHERE: ("cohere", 96, 1024)}

#: ``rate_limit.requests_per_minute`` of endpoints whose rows do not test it.
UNLIMITED_RPM = 6_000_000

#: The rows of every scenario, in table order (the probe only where it is given).
CLIENTS = ("limit", "lib-sync", "lib-async", "es-seq", "es-gather", "probe")

LABELS = {
    "limit": "limit",
    "lib-sync": "es-inference `embed_array`",
    "lib-async": "es-inference `aembed_array`",
    "es-seq": "elasticsearch, 1 call per text",
    "es-gather": "AsyncElasticsearch, `gather` all",
    "probe": "bare asyncio HTTP, 16 connections",
}

#: Rows whose result arrays are smaller than this are not judged on memory: the
#: client's fixed cost (threads, connections, one answer in flight) dominates them.
MEMORY_JUDGED_FROM = 8 * 1024 * 1024


@dataclass(frozen=True)
class Scenario:
    """One endpoint behind one server setting, and how many texts each client embeds.

    Attributes:
        key: Short name, also part of the endpoint id.
        model: Bedrock model id (Titan: 1 text per request, Cohere: 96).
        latency_ms: Latency the server adds to every inference request.
        rpm: The endpoint's enforced ``rate_limit``; ``None`` for a high one.
        texts: Texts per client, in the order of :data:`CLIENTS` (limit excluded);
            0 leaves a client out.
    """

    key: str
    model: str
    latency_ms: float
    rpm: int | None
    texts: tuple[int, int, int, int, int]

    @property
    def provider(self) -> str:
        return MODELS[self.model][0]

    @property
    def per_request(self) -> int:
        return MODELS[self.model][1]

    @property
    def dims(self) -> int:
        return MODELS[self.model][2]

    @property
    def inference_id(self) -> str:
        return f"bench-{self.key}"

    @property
    def title(self) -> str:
        name = "Titan" if self.model == TITAN else "Cohere"
        rate = f", rate limit {self.rpm}/min" if self.rpm else ""
        return f"{name} ({self.per_request}/req), {self.latency_ms:g} ms{rate}"

    @property
    def limit(self) -> float:
        """Texts per second: ``min(rate limit, concurrency / latency)`` requests."""
        by_latency = DEFAULT_CONCURRENCY / (self.latency_ms / 1000)
        by_rate = self.rpm / 60 if self.rpm else math.inf
        return min(by_rate, by_latency) * self.per_request

    @property
    def limit_text(self) -> str:
        latency = f"{DEFAULT_CONCURRENCY} / {self.latency_ms:g} ms"
        parts = f"min({self.rpm}/min, {latency})" if self.rpm else latency
        return f"{parts} × {self.per_request}"

    def count(self, client: str) -> int:
        return self.texts[CLIENTS.index(client) - 1]

    @property
    def clients(self) -> list[str]:
        """The measured clients of this scenario, in table order."""
        return [client for client in CLIENTS[1:] if self.count(client)]


def scenarios(quick: bool) -> list[Scenario]:
    """The default run, or a tiny one that checks the machinery in seconds."""
    if quick:
        return [
            Scenario("titan-q", TITAN, 5, None, (64, 64, 16, 64, 64)),
            Scenario("cohere-q", COHERE, 5, None, (960, 960, 16, 64, 960)),
        ]
    return [
        Scenario("titan-20", TITAN, 20, None, (12000, 12000, 150, 1500, 6000)),
        Scenario("titan-100", TITAN, 100, None, (2100, 2100, 30, 400, 800)),
        Scenario("titan-rl", TITAN, 20, 6000, (2100, 2100, 150, 400, 0)),
        Scenario("cohere-20", COHERE, 20, None, (20000, 20000, 150, 1500, 20000)),
        Scenario("cohere-100", COHERE, 100, None, (20000, 20000, 30, 400, 20000)),
        Scenario("cohere-rl", COHERE, 20, 1800, (20000, 20000, 150, 200, 0)),
    ]


#: Texts of the two bounded-memory runs of ``embed_to_file`` (small, large).
FILE_SIZES = {False: (10_000, 40_000), True: (600, 2400)}
FILE_CHUNK = {False: 2048, True: 256}
