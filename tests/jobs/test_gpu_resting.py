"""Which jobs are done with the GPU for now (``GpuTurns.resting``), and the worker that takes one job more exactly
while every running job rests (``HEADSHOT_WORKER_OVERLAP``): real asyncio tasks and sections on the torch thread, a
real arq ``Worker`` reading its ``max_jobs`` as it does before each job it starts."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from arq import func
from arq.connections import RedisSettings

from jobs.worker.app import OverlappingWorker
from jobs.worker.gpu import GpuTurns
from jobs.worker.threads import ProgressReporter


def _progress() -> ProgressReporter:
    return ProgressReporter(None, "local:a", "job", 1.0)  # type: ignore[arg-type]  # reports nothing: no publisher


async def test_a_job_rests_after_its_section_until_it_asks_again_or_ends() -> None:
    turns = GpuTurns()
    seen: dict[str, int] = {}
    asked_again = asyncio.Event()
    go_on = asyncio.Event()

    def section(name: str) -> Any:
        def work() -> None:
            seen[name] = turns.resting  # read on the torch thread, while the section runs

        return work

    async def job() -> None:
        await turns.run(_progress(), section("first"))
        seen["after the first"] = turns.resting
        await turns.run(_progress(), section("second"), more=True)  # an upscale's render: its face pass follows
        seen["between render and face pass"] = turns.resting
        asked_again.set()
        await go_on.wait()
        turns.rest()  # no face to pass after all
        seen["after saying so"] = turns.resting
        turns.rest()  # twice is once
        seen["after saying so twice"] = turns.resting

    task = asyncio.create_task(job())
    await asked_again.wait()
    go_on.set()
    await task
    assert seen == {
        "first": 0,  # in a section: not resting
        "after the first": 1,
        "second": 0,  # a new section ends the rest, also while it waits for its turn
        "between render and face pass": 0,
        "after saying so": 1,
        "after saying so twice": 1,
    }
    await asyncio.sleep(0)  # the task's done callbacks
    assert turns.resting == 0  # a job that ended rests no longer, however it ended
    turns.close()


async def test_a_job_waiting_for_its_turn_is_not_resting() -> None:
    turns = GpuTurns()
    release = asyncio.Event()
    ask = asyncio.Event()
    loop = asyncio.get_running_loop()

    def held() -> None:  # another job's section, until the test lets it end
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result()

    async def rests_then_asks_again() -> None:
        await turns.run(_progress(), lambda: None)
        await ask.wait()
        await turns.run(_progress(), lambda: None)  # waits behind ``held``

    other = asyncio.create_task(rests_then_asks_again())
    await asyncio.sleep(0.05)
    assert turns.resting == 1
    holder = asyncio.create_task(turns.run(_progress(), held))
    await asyncio.sleep(0.05)
    ask.set()
    await asyncio.sleep(0.05)
    assert turns.resting == 0  # waiting for its turn, it needs the GPU
    release.set()
    await asyncio.gather(holder, other)
    await asyncio.sleep(0)
    assert turns.waited == 1 and turns.resting == 0
    turns.close()


async def test_the_overlapping_worker_takes_one_more_job_only_while_its_jobs_rest() -> None:
    async def job(ctx: dict[str, Any]) -> None:  # arq needs a function to build a worker; none runs here
        return None

    worker = OverlappingWorker(functions=[func(job, name="job")], redis_settings=RedisSettings(), max_jobs=1)
    assert worker.max_jobs == 1  # before start-up: no state yet
    turns = GpuTurns()
    worker.ctx["state"] = SimpleNamespace(gpu=turns)
    assert worker.max_jobs == 1  # a job just taken has not rested: no second one to wait behind it

    resting = asyncio.Event()
    done = asyncio.Event()

    async def running_job() -> None:
        await turns.run(_progress(), lambda: None)
        resting.set()
        await done.wait()  # its host work: face search, PNGs, uploads

    first = asyncio.create_task(running_job())
    second = asyncio.create_task(running_job())
    await resting.wait()
    await asyncio.sleep(0)
    assert turns.resting >= 1 and worker.max_jobs == 2  # one more, never two more
    done.set()
    await asyncio.gather(first, second)
    await asyncio.sleep(0)
    assert turns.resting == 0 and worker.max_jobs == 1
    worker.max_jobs = 3  # arq's own setting stays the base
    assert worker.max_jobs == 3
    turns.close()
    await worker.close()
