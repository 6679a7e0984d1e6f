"""The ``deskside worker`` process, as a service manager runs it: killed halfway it loses and
repeats nothing; told to stop (SIGTERM, Ctrl-C) it finishes the batch in hand and exits. On a
real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import asyncio
import signal
import sys
import time

import pytest

from deskside.insights.helpscout.inbox import Inbox
from deskside.insights.models import Conversation, Event, Thread
from test_insights_webhooks import body_of, conversation, count, opened

pytestmark = pytest.mark.anyio


async def test_a_worker_killed_mid_processing_loses_and_repeats_nothing(
    insights_url: str,
) -> None:
    total = 4000
    async with opened(insights_url) as store:
        inbox = Inbox(store)
        await asyncio.gather(
            *(
                inbox.accept("convo.created", body_of(conversation(10_000 + n, threads=3)))
                for n in range(total)
            )
        )
        await inbox.aclose()
        assert await count(store, Event) == total

        command = [sys.executable, "-m", "deskside", "worker", "--database", insights_url]
        worker = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        try:
            deadline = time.monotonic() + 60
            while await count(store, Event, Event.status == "done") == 0:
                assert worker.returncode is None, await worker.communicate()
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
        finally:
            worker.send_signal(signal.SIGKILL)
            await worker.wait()
        done_at_kill = await count(store, Event, Event.status == "done")
        assert 0 < done_at_kill < total, "the kill must land halfway"

        drained = await asyncio.create_subprocess_exec(
            *command, "--drain", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        output, errors = await asyncio.wait_for(drained.communicate(), 120)
        assert drained.returncode == 0, errors.decode()
        assert f"{total - done_at_kill} event(s) processed" in output.decode()
        assert await count(store, Event, Event.status == "done", Event.attempts == 1) == total
        assert await count(store, Conversation) == total
        assert await count(store, Thread) == 3 * total


@pytest.mark.parametrize(
    ("stop_with", "drain", "status"),
    [(signal.SIGTERM, False, 0), (signal.SIGINT, True, 130)],
    ids=["sigterm-service", "ctrl-c-drain"],
)
async def test_a_worker_told_to_stop_finishes_its_batch_and_exits(
    insights_url: str, stop_with: signal.Signals, drain: bool, status: int
) -> None:
    total = 4000
    async with opened(insights_url) as store:
        inbox = Inbox(store)
        for start in range(0, total, 500):
            await asyncio.gather(
                *(
                    inbox.accept("convo.created", body_of(conversation(30_000 + n)))
                    for n in range(start, start + 500)
                )
            )
        await inbox.aclose()

        command = [sys.executable, "-m", "deskside", "worker", "--database", insights_url]
        worker = await asyncio.create_subprocess_exec(
            *command,
            *(["--drain"] if drain else []),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while await count(store, Event, Event.status == "done") == 0:
            assert worker.returncode is None, await worker.communicate()
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        worker.send_signal(stop_with)
        output, errors = await asyncio.wait_for(worker.communicate(), 60)

        assert worker.returncode == status, errors.decode()
        assert "Stopped; unfinished events stay pending" in errors.decode()
        done = await count(store, Event, Event.status == "done", Event.attempts == 1)
        assert 0 < done < total, "the signal must land halfway"
        assert f"{done} event(s) processed" in output.decode()
        assert await count(store, Event, Event.status == "pending", Event.attempts == 0) == (
            total - done
        )
        assert await count(store, Conversation) == done
