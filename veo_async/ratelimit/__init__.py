"""The shared request-rate governor: one per client, used by every create, poll and get.

It does three things, all free when unused (no lock, no sleep, a few counters), each in its
own part:

* :class:`TokenBucket` (``_bucket.py``): an optional client-side rate
  (``requests_per_second``);
* :class:`RateLimitPause` (``_bucket.py``): a **whole-pipeline pause** after a 429 that shows
  a limit: every request waits until the ``Retry-After`` (or a backoff) has passed, instead of
  each request discovering the limit on its own. A scattered 429 (no limit shown: no pace,
  too few 429s to be more than noise) makes only the refused request wait (its retry, in the
  same task; a context variable carries the wait), so faults never freeze the pipeline;
* :class:`PaceLearner` (``_learner.py``, counting in ``_counts.py``): a **learned pace** that
  stays just under the server's limit, found from what the server let through, and probed
  upwards only rarely.

:class:`RateGovernor` (``_governor.py``) composes them and is the only part that reads the
clock or waits. Every threshold is a named field of :class:`GovernorTuning` (``_tuning.py``);
the learner's state is a :class:`PaceState`.

How the pace is learned
-----------------------
Time is cut into *epochs*: each starts when the pace changes. For the requests released in the
current epoch the learner counts the answers the server let through (anything but a 429, since
a 5xx was still admitted by the server's limiter) and the 429s.

1. **No pace yet.** A 429 lowers nothing unless the epoch shows a limit: at least
   ``min_evidence`` 429s *and* more than ``noise_tolerance`` of its answers refused, by
   ``significance_sigmas`` standard errors of a share of that many answers. Scattered 429s
   that do not depend on the request rate (a flaky gateway, random throttling) only make the
   refused request wait;
   they never pace the batch. The same test runs over the answers since the first 429 of a
   burst (``verify_min_answers`` of them at least), so a wave above the limit after a quiet
   spell, a small share of the windows, still shows it.
2. **Lowering.** The pace becomes ``headroom`` times the rate the server let through since
   the first 429 of the burst (between the first and last release let through: for a token
   bucket that is its refill rate, its burst allowance spent; a quiet spell before the burst
   is not counted). Until ``min_measured_answers`` were let through since then, released
   ``min_measured_seconds`` apart at least (a handful a few tenths of a second apart measure
   the release jitter, not the limit), a limit only pauses. The first batch of releases
   (within ``release_batch_seconds``: a pause's end releases every request it held at once)
   is not counted: the server let those through on tokens saved before. The next epoch is a
   *verifying* one: a correct pace draws no 429 at all, so any new 429 in it lowers again,
   measured over the requests released while the pace held them back (one that did not wait
   starts the measurement over: the demand fell below the pace, and a quiet spell would
   measure the demand, not the limit). Two lowerings usually suffice.
3. **Settled.** Once ``verify_seconds`` pass without a 429 the pace is settled.
4. **Probing.** While the pace is actually holding requests back (every request for
   ``probe_seconds`` without a break: a batch held back only in waves gains little from a
   faster pace), every ``probe_seconds`` it is raised by ``probe_step`` to find a limit that
   has grown, but no higher than a remembered *ceiling*: ``probe_ceiling_margin`` x a rate
   measured as the server's or a pace that drew a 429 while pressing, and the pace a failed
   probe fell back to. A ceiling is remembered for ``ceiling_memory_intervals`` x
   ``probe_seconds`` (600 s), doubled by every failed probe without bound; once it lapses,
   a probe above it is made only after ``ceiling_probe_hold_seconds`` of holding back every
   request (a backlog, not a wave). A fixed limit pressed for 9,000 s then costs 3 429s, not
   26. The probe stands after
   ``probe_stand_intervals`` more intervals without a 429, if requests went faster than the
   old pace. A 429 during a probe, or at the pace it reached before the next probe (a
   server's burst allowance can hide a small excess for a long while), reverts to the pace
   below it and multiplies the probe interval by ``probe_backoff`` (up to
   ``probe_max_factor``), so a fixed limit costs one 429 per ever-longer interval instead of
   a sawtooth of bursts. At a settled pace that is holding requests back, a 429 is the
   pace's own (the batch presses against it, so it is above the server's rate): it lowers
   the pace by ``pressed_cut`` and verifies it again, so a first pace a few percent too high
   (which passed ``verify_seconds`` while the server's burst allowance hid the excess) costs
   one 429, not one each time the batch presses long enough. The same holds for a pace still
   being verified ``verify_seconds`` after it was set because the batch never pressed it (a
   first burst's pace, then a quiet spell until the first wave of jobs ends). Once 429s were
   found to be
   noise (rule 5), ``min_evidence`` of them within ``count_seconds`` are needed instead. A
   settled pace that holds nothing back (the batch asks for less now) is judged by rule 1,
   like no pace at all: scattered 429s then only pause.
5. **Noise.** A chain of lowerings that leaves the refused share unchanged shows 429s that
   do not depend on the rate: the pace goes back up and such a share only pauses from then
   on (``noise``; see :func:`~veo_async.ratelimit._counts.noise_run`).

The learned pace never drops below ``relative_floor`` times the best rate the server was
measured to let through in a verifying epoch (``ceiling``; measured once the burst allowance
was drained), nor below ``floor`` requests per second, so 429s that do not depend on the rate,
however many, cannot ratchet a batch down to a crawl. (The price: a limit that later falls
below that is honoured by the pauses alone.) Durations are in service seconds: with
``time_scale`` (a time-compressed emulator) they shrink with it.

A 429 for a request *sent before* the governor reacted to an earlier 429 belongs to the same
burst: it extends the pause if needed but is not a new decision. ``bursts`` counts new
decisions; ``rate_limited`` every 429; ``rate_limited_after_reaction`` the 429s of requests
released after the first reaction (the ones pacing could have avoided); ``lowered`` and
``probes_failed`` count pace changes.

Waiters are served in FIFO order (an ``anyio.Lock`` is fair), so no request starves. Time comes
from ``veo_async._timing`` (a testing switch removes all waiting).
"""

from ._bucket import RateLimitPause, TokenBucket
from ._governor import RateGovernor
from ._learner import PaceLearner
from ._tuning import GovernorTuning, PaceState

__all__ = [
    "GovernorTuning",
    "PaceLearner",
    "PaceState",
    "RateGovernor",
    "RateLimitPause",
    "TokenBucket",
]
