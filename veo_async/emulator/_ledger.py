"""The ledger: what the emulator saw and did, the ground truth tests and benchmarks check."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from ._jobs import Job


def duplicate_prompts(records: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Prompts with more than one generation: ``{prompt: [generation ids]}``.

    Works on ``stats()["generations"]`` from the HTTP endpoint as well as in process.
    """
    by_prompt: dict[str, list[str]] = {}
    for record in records:
        by_prompt.setdefault(str(record["prompt"]), []).append(str(record["id"]))
    return {prompt: ids for prompt, ids in by_prompt.items() if len(ids) > 1}


class Ledger:
    """What the emulator saw and did; the ground truth for "nothing lost, nothing paid twice".

    Counters are plain attributes. ``generations`` maps id to :class:`Job` for every
    generation ever created (restarts keep them; :meth:`Emulator.reset` clears them).
    """

    def __init__(self) -> None:
        self.create_requests = 0
        """Create requests received (every one, whatever its answer)."""
        self.generations_created = 0
        """Generations made (and charged)."""
        self.poll_requests = 0
        """Poll requests received."""
        self.download_requests = 0
        """Requests to the CDN path."""
        self.rate_limited = 0
        """429 responses sent (the real limiter and injected ones)."""
        self.faults_injected: Counter[str] = Counter()
        """Injected faults by kind (generation outcomes count when the job is created)."""
        self.credits_charged = 0
        """Credits charged over all keys."""
        self.cdn_requests_with_authorization = 0
        """CDN requests that carried an ``Authorization`` header (a key leak)."""
        self.responses_by_status: Counter[int] = Counter()
        """Responses by HTTP status (resets and truncations are counted as faults only)."""
        self.restarts = 0
        """Times :meth:`Emulator.restart` forgot the live jobs."""
        self.generations: dict[str, Job] = {}
        """Every generation, by id."""

    def duplicate_prompts(self) -> dict[str, list[str]]:
        """Prompts with more than one generation: ``{prompt: [ids]}``."""
        by_prompt: dict[str, list[str]] = {}
        for job in self.generations.values():
            by_prompt.setdefault(job.prompt, []).append(job.id)
        return {prompt: ids for prompt, ids in by_prompt.items() if len(ids) > 1}

    def counters(self) -> dict[str, Any]:
        """The counters as a JSON-able dict."""
        return {
            "create_requests": self.create_requests,
            "generations_created": self.generations_created,
            "poll_requests": self.poll_requests,
            "download_requests": self.download_requests,
            "rate_limited": self.rate_limited,
            "faults_injected": dict(sorted(self.faults_injected.items())),
            "credits_charged": self.credits_charged,
            "cdn_requests_with_authorization": self.cdn_requests_with_authorization,
            "responses_by_status": {
                str(code): n for code, n in sorted(self.responses_by_status.items())
            },
            "restarts": self.restarts,
        }
