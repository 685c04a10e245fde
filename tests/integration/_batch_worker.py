"""One worker process of a durable batch, for ``test_distributed_batch.py``.

``python _batch_worker.py --base URL --store STORE_URL --worker NAME --tag TAG --n N [...]``
runs ``client.batch(prompts, store=STORE_URL, store_options=StoreOptions(...))`` against the
emulator server at ``URL``, with the prompts ``"TAG scene 0"`` .. ``"TAG scene N-1"`` (the
result's index is the number in the prompt). It prints one flushed line per step, so the
parent can time a kill and knows what this worker did:

- ``loaded``: imports done and client made; then it waits for a line on stdin (a start gate,
  so several workers start together);
- ``ready BATCH_ID``: the store is open and the inputs are in it;
- ``intent KEY``: this worker won the intent for ``KEY`` (durable in the store), the create
  is about to be sent;
- ``created KEY GID``: the create returned ``GID`` and the store has recorded it;
- ``result INDEX KEY GID OUTCOME``: a result this worker reported (``GID`` is ``-`` when no
  generation exists; ``OUTCOME`` is ``ok``, ``uncertain`` or the error's type name);
- ``done COUNT``: the batch ended normally after ``COUNT`` results;
- ``error TYPE MESSAGE``: the batch raised a library error (exit code 2).

``VEO_TEST_CLOCK_SKEW`` (seconds, may be negative) shifts ``time.time`` in this process: a
worker whose wall clock is off by that much (monotonic time, which the engine paces with, is
left alone).

``python _batch_worker.py --zygote`` imports everything once, prints ``zygote ready``, then
forks one worker per JSON line on stdin (``{"argv": [...], "port": P, "stderr": PATH,
"skew": S}``): each child is a separate process with its own event loop and connections,
made after the fork. It connects to ``127.0.0.1:P`` and uses that socket as its stdin and
stdout (first line ``hello PID``, last line ``exit CODE`` unless killed), and writes its
stderr to ``PATH``. Forking skips the import time of a fresh interpreter (seconds on a
loaded machine) for every worker.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
import traceback
from contextlib import suppress
from typing import Any

import anyio
import anyio.to_thread


def shift_clock(skew: float) -> None:
    """Make ``time.time`` run ``skew`` seconds off in this process."""
    if not skew:
        return
    real_time = time.time

    def skewed_time() -> float:
        return real_time() + skew

    time.time = skewed_time


shift_clock(float(os.environ.get("VEO_TEST_CLOCK_SKEW", "0") or 0))

from veo_async import (  # noqa: E402 - after the clock is shifted, on purpose
    AsyncVeoClient,
    BatchItem,
    CreateOutcomeUnknownError,
    Generation,
    NullObserver,
    StoreOptions,
    VeoError,
    VideoRequest,
)


def say(*words: Any) -> None:
    """Print one line and flush it (the parent reads it as a step that happened)."""
    print(*words, flush=True)


class Announce(NullObserver):
    """Prints the intent and the id of each create (both already recorded in the store)."""

    async def before_submit(self, index: int, item: BatchItem, request: VideoRequest) -> None:
        say("intent", item.key)

    async def after_submit(self, index: int, item: BatchItem, generation: Generation) -> None:
        say("created", item.key, generation.id)


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True, help="the emulator server's base URL")
    p.add_argument("--store", required=True, help="the store URL (redis://, sqlite://)")
    p.add_argument("--worker", required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--batch-id", default=None)
    p.add_argument("--time-scale", type=float, default=0.005)
    p.add_argument("--lease", type=float, default=1.0)
    p.add_argument("--max-leased", type=int, default=4)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--idle-poll", type=float, default=0.05)
    p.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    return p.parse_args(argv)


async def main(args: argparse.Namespace) -> int:
    """Run the batch; print every step; 0 when it ended, 2 on a library error."""
    prompts = [f"{args.tag} scene {i}" for i in range(args.n)]
    options = StoreOptions(
        worker=args.worker,
        batch_id=args.batch_id,
        lease_seconds=args.lease,
        max_leased=args.max_leased,
        idle_poll=args.idle_poll,
    )
    client = AsyncVeoClient("emulator-key", base_url=args.base, time_scale=args.time_scale)
    async with client:
        say("loaded")
        await anyio.to_thread.run_sync(sys.stdin.readline)
        count = 0
        try:
            async with client.batch(
                prompts,
                store=args.store,
                store_options=options,
                max_concurrency=args.concurrency,
                observer=Announce(),
            ) as batch:
                say("ready", batch.batch_id)
                async for result in batch:
                    if result.ok:
                        outcome = "ok"
                    elif isinstance(result.error, CreateOutcomeUnknownError):
                        outcome = "uncertain"
                    else:
                        outcome = type(result.error).__name__
                    say("result", result.index, result.key, result.generation_id or "-", outcome)
                    count += 1
        except VeoError as exc:
            say("error", type(exc).__name__, str(exc).replace("\n", " "))
            return 2
    say("done", count)
    return 0


def run(argv: list[str]) -> int:
    """Parse ``argv`` and run one worker on its backend."""
    args = parse(argv)
    code: int = anyio.run(main, args, backend=args.backend)
    return code


# ------------------------------------------------------------------------------ zygote


def serve_forks() -> None:
    """Import what a worker needs, then fork one worker per spec line on stdin."""
    import threading

    import redis.asyncio  # noqa: F401 - imported once here, not in every child
    import trio  # noqa: F401

    import veo_async.batch._durable
    import veo_async.stores._redis
    import veo_async.stores._sqlite  # noqa: F401

    assert threading.active_count() == 1, "fork only from a single-threaded process"
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    say("zygote ready")
    for line in sys.stdin:
        spec = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() == 0:
            code = 1
            try:
                code = forked_child(spec)
            finally:
                os._exit(code)  # never back into the zygote's loop


def forked_child(spec: dict[str, Any]) -> int:
    """Become one worker: the socket is stdin and stdout, ``spec["stderr"]`` is stderr."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        err = os.open(spec["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(err, 2)
        os.dup2(err, 1)  # stray writes to fd 1 go to the file, not the zygote's pipe
        os.close(err)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        sock = socket.create_connection(("127.0.0.1", spec["port"]))
        sys.stdin = sock.makefile("r", encoding="utf-8")
        sys.stdout = sock.makefile("w", encoding="utf-8")
        say("hello", os.getpid())
        shift_clock(float(spec.get("skew", 0.0)))
        code = run(spec["argv"])
        say("exit", code)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with suppress(OSError):
                stream.flush()
    return code


if __name__ == "__main__":
    if sys.argv[1:] == ["--zygote"]:
        serve_forks()
    else:
        sys.exit(run(sys.argv[1:]))
