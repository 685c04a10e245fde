"""Helpers for testing your own code against veo-async, with no network and no credits.

* :func:`emulated` - an :class:`~veo_async.AsyncVeoClient` wired in-process to the realistic
  emulator (``veo_async.emulator``; needs ``pip install 'veo-async[emulator]'``), time-compressed.
* :class:`ScriptedVeoAPI` - a tiny fake of the API on ``httpx.MockTransport`` whose job
  lifecycles you script per prompt ("this prompt fails", "that one takes 5 polls"), with no
  clock at all. No extra dependencies.
* :func:`no_waiting` - removes every retry backoff, poll interval and rate-limit pause.
* ``veo_async.testing.pytest_plugin`` - fixtures; enable with
  ``pytest_plugins = ["veo_async.testing.pytest_plugin"]`` in your ``conftest.py``.
"""

from __future__ import annotations

from ._emulated import EmulatedService, emulated
from ._scripted import Script, ScriptedVeoAPI
from ._waiting import no_waiting

__all__ = ["EmulatedService", "Script", "ScriptedVeoAPI", "emulated", "no_waiting"]
