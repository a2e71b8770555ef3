"""How requests get their samples: the rounds of the cacher's one serving path.

`Server.serve` takes a list of `Job`s (one request alone, or a whole batch) and does each
step in bulk, whatever the allocator:

1. **reserve**: the allocator grants each job its indices, before the first await;
2. **claim** (`_take`) the indices no request of this process is reading or producing;
   the others are waited for (rule 4); texts the pipeline remembers are served at once;
3. **read** every claim in one bulk store read;
4. **lease**: the allocator says which missing indices may be generated here (in a
   shared run another worker may be generating the others: they are polled for);
5. **generate** what is missing (`Generation`: one model call and one write per job,
   driven by callbacks, so it completes even if its requester is cancelled).

An index whose producer failed, or that another worker holds, goes into the next round.
Until a generation takes a claim over, any failure or cancellation releases the claim,
so nobody waits on a claim nobody will finish. A request that fails here has its
``error`` set; the cacher answers each job (`AsyncCacher._settle`) and gives back the
indices of the failed ones.

A request alone that one round serves completely (an exclusive allocator, and nobody in
this process claims indices of its key: the usual case) goes through `Server.begin`
instead: the same steps, started synchronously, with the requester awaiting the round's
future itself, then `Server.ended`. It saves a coroutine per request.
"""

from __future__ import annotations

import asyncio

from cachesaver._allocation import Allocator
from cachesaver._coordination import Claim, Memo
from cachesaver._generation import Generation, Latch, LoopState, decoded
from cachesaver._models import Layer, describe
from cachesaver._rounds import NO_JOBS, NOTHING, Job, Round
from cachesaver.codec import decode_sample
from cachesaver.errors import CacheMissError
from cachesaver.stores.base import SampleRead

__all__ = ["Job", "Server"]

_new_tuple = tuple.__new__  # a `SampleRead` without its Python-level __new__


class Server:
    """The serving rounds of one cacher (see the module docstring)."""

    def __init__(
        self, memo: Memo, allocator: Allocator, inner: Layer, replay: bool, store: object
    ) -> None:
        self.memo = memo
        self.allocator = allocator
        self.inner = inner
        self.replay = replay
        self.store = store  # named in messages

    async def serve(self, state: LoopState, jobs: list[Job]) -> None:
        """Reserve and serve ``jobs``; each ends with its samples in ``served`` or an error.

        Each round claims what it can (`_take`), reads the claims in one bulk read,
        asks the allocator which missing indices may be generated here (unless it is
        the only generator), starts a generation per job (`start_generations`) and
        waits for them, then waits for indices other requests of this process are
        producing. One coroutine for all of it: a request pays for one frame, not one
        per step (and a request that `begin` serves, for none).
        """
        allocator = self.allocator
        state.serving += 1  # aclose() waits for these requests
        try:
            grants = allocator.reserve(jobs)
            if not isinstance(grants, list):
                grants = await grants
            for job, grant in zip(jobs, grants, strict=True):
                if isinstance(grant, list):
                    job.indices = job.todo = grant
                else:
                    job.error = grant
            try:
                active = jobs
                delay = 0.02
                while True:
                    count = 0
                    waiting: list[Job] | None = None
                    for job in active:
                        if job.error is None:
                            self._take(state, job)
                            if job.claim is not None:
                                count += 1
                            if job.waits is not None:
                                if waiting is None:
                                    waiting = []
                                waiting.append(job)
                    claimed = active  # usually every job claims something: no new list
                    if count == 0:  # all served from memory (hits), or all waiting
                        claimed = NO_JOBS
                    elif count != len(active):
                        claimed = [job for job in active if job.claim is not None]
                    if claimed:
                        step = Round(self, state, claimed)
                        if len(claimed) == 1:
                            job = claimed[0]
                            read = _new_tuple(SampleRead, (job.key, job.mine))
                            state.reads.submit_then(read, step)
                        else:
                            reads = [_new_tuple(SampleRead, (j.key, j.mine)) for j in claimed]
                            state.reads.submit_all_then(reads, step)
                        await step.future  # once the read and the generations are done
                        asking = step.asking
                        if asking and not allocator.exclusive:
                            await self._lease_and_generate(state, asking)
                        for job in asking:
                            error = job.error
                            if error is not None and not isinstance(error, Exception):
                                raise error  # a cancelled model call: so is this request
                    if waiting is not None:
                        for job in waiting:
                            waits, job.waits = job.waits, None
                            if job.error is None and waits is not None:
                                retry = await self._wait_for_others(job, waits)
                                if retry:
                                    job.todo = job.todo + retry
                    if len(active) == 1:
                        job = active[0]
                        if job.error is not None or not job.todo:
                            return
                        polling = job.polling
                    else:
                        active = [job for job in active if job.error is None and job.todo]
                        if not active:
                            return
                        polling = any(job.polling for job in active)
                    if polling:
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 0.5)
            except BaseException:
                for job in jobs:
                    if job.indices is not None:
                        allocator.give_back(job.request, job.key, job.indices)
                raise
        finally:
            state.serving -= 1
            if state.idle is not None:  # aclose() waits
                state.maybe_idle()

    def begin(self, state: LoopState, job: Job) -> Round | Job | None:
        """Serve one request in the usual case without the serving coroutine, or decline.

        The usual case: the allocator is exclusive (it grants at once, and every missing
        index is generated here) and no request of this process claims indices of the
        key. One round then serves the request: its read, and the generations the read
        starts, complete the round's future, and nothing is left to do after it.
        Returns that round (await its ``future``, then call `ended`), the job itself
        when no round is needed (served from memory, or failed), or None, having done
        nothing, when it is not the usual case (await `serve` instead).
        """
        allocator = self.allocator
        if not allocator.exclusive or job.key in state.coord.claims:
            return None
        jobs = [job]
        grants = allocator.reserve(jobs)
        assert isinstance(grants, list)  # exclusive allocators grant at once
        grant = grants[0]
        if not isinstance(grant, list):
            job.error = grant
            return job
        job.indices = job.todo = grant
        self._take(state, job)
        if job.claim is None:  # all remembered, or a remembered text failed to decode
            return job
        state.serving += 1  # until `ended`: aclose() waits for this request
        step = Round(self, state, jobs)
        state.reads.submit_then(_new_tuple(SampleRead, (job.key, job.mine)), step)
        return step

    def ended(self, state: LoopState, job: Job, failed: bool) -> None:
        """The round `begin` started is over; ``failed``: the wait for it was interrupted
        (the request is cancelled), and the job's indices go back, as `serve` does.

        (A job that failed otherwise, a cancelled model call included, is answered with
        its error by the cacher, which gives its indices back.)
        """
        state.serving -= 1
        if state.idle is not None:  # aclose() waits
            state.maybe_idle()
        if failed:
            assert job.indices is not None
            self.allocator.give_back(job.request, job.key, job.indices)

    def _take(self, state: LoopState, job: Job) -> None:
        """Serve remembered samples, claim the free indices, group the rest by claim.

        Takes the job's ``todo`` and sets its ``mine`` and ``claim`` (indices it reads or
        produces) and ``waits`` (indices other requests are producing, by claim).
        Synchronous: it runs before the request's next await, so nobody in this process
        reads or generates an index twice.
        """
        key = job.key
        todo, job.todo, job.polling = job.todo, NOTHING, False
        hits = self.memo.get(key, todo)
        if hits:  # remembered texts of stored samples: no store round trip
            served = job.served
            try:
                for index, text in hits.items():
                    try:
                        value = decode_sample(text)
                    except Exception:
                        decoded(text, key, index)  # raises, naming the key and index
                        raise
                    served[index] = (value, True, False)
            except Exception as exc:  # a remembered text that no longer decodes
                job.error = exc
                return
            if len(hits) == len(todo):
                return
            todo = [index for index in todo if index not in hits]
        coord = state.coord
        claims = coord.claims
        owned = claims.get(key)
        # A claim is released before it finishes, so a finished one is never in the
        # table; were one left there, waiting on it would never end: it counts as free.
        if type(owned) is Claim and owned.produced:
            owned = None
        if owned is None:  # nobody claims anything of this key: all of it is free
            claims[key] = job.claim = Claim(todo)  # the key's only claim
            job.mine = todo
            job.waits = None
            return
        if type(owned) is Claim:
            owned = coord.by_index(key, owned)
        assert isinstance(owned, dict)
        waits: dict[Claim, list[int]] | None = None
        mine = []
        for index in todo:
            other = owned.get(index)
            if other is None or other.produced:  # (finished: see above)
                mine.append(index)
            else:
                if waits is None:
                    waits = {}
                if other.values is None:
                    other.values = {}  # its producer keeps the texts for waiters now
                waits.setdefault(other, []).append(index)
        job.waits = waits
        if mine:
            claim = job.claim = Claim(mine)
            job.mine = mine
            for index in mine:
                owned[index] = claim

    async def _lease_and_generate(self, state: LoopState, asking: list[Job]) -> None:
        """Another worker may be generating some missing indices: lease, then generate."""
        try:
            leased = self.allocator.lease([(job.key, job.mine) for job in asking])
            held = leased if isinstance(leased, list) else await leased
        except BaseException as exc:
            for job in asking:
                self.abandon(state, job, exc)
            if not isinstance(exc, Exception):
                raise
            return
        latch = Latch()
        self.start_generations(state, asking, held, latch)
        latch.done_one()
        if latch.left:
            await latch.future

    def take_in_all(
        self, state: LoopState, claimed: list[Job], results: list[dict[int, str]]
    ) -> list[Job]:
        """Take in what the bulk read found; return the jobs with indices still missing."""
        asking = 0
        for job, found in zip(claimed, results, strict=True):
            asking += self.take_in(state, job, found)
        if asking == len(claimed):
            return claimed
        return [job for job in claimed if job.claim is not None]

    def take_in(self, state: LoopState, job: Job, found: dict[int, str]) -> bool:
        """Take in what a read of the job's claim found; say whether indices are missing.

        The job's ``mine`` becomes its missing indices; with nothing missing, or failing
        (replay mode, a damaged sample), its claim is finished or abandoned.
        """
        key = job.key
        mine = job.mine
        claim = job.claim
        assert claim is not None
        served = job.served
        values = claim.values
        put = self.memo.put
        try:
            for index, text in found.items():
                try:
                    served[index] = (decode_sample(text), True, False)
                except Exception:
                    decoded(text, key, index)  # raises, naming the key and index
                    raise
                put(key, index, text)  # only texts that decode are remembered
                if values is not None:
                    values[index] = text
            if len(found) == len(mine):
                state.coord.release(key, mine, claim)
                job.claim = None
                claim.finish()
                return False
            claim.mark_checked()
            if found:
                state.coord.release(key, list(found), claim)
            missing = [index for index in mine if index not in found] if found else mine
            if self.replay:
                raise CacheMissError(
                    f"replay mode: {len(missing)} of the {job.request.n} samples of "
                    f"({describe(job.request, key)}) are not in the cache {self.store!r}; "
                    "run once with mode='readwrite' (or import the run's cache) first"
                )
        except Exception as exc:
            self.abandon(state, job, exc)
            return False
        job.mine = missing
        return True

    def start_generations(
        self, state: LoopState, asking: list[Job], held: list[list[int]] | None, latch: Latch
    ) -> None:
        """Start one generation per job for the missing indices it may generate.

        The model call and the write are driven by callbacks, not by the requester: if
        it is cancelled they still finish and the samples are stored. Each generation
        counts ``latch`` down when it ends. ``held``: the indices each job may generate
        (None: all its missing indices).
        """
        for position, job in enumerate(asking):
            claim = job.claim
            assert claim is not None
            missing = job.mine
            job.claim = None  # from here on the generation (or nobody) finishes it
            if held is not None and len(held[position]) < len(missing):
                # Another worker is generating the others: poll for them.
                holding = set(held[position])
                remote = [index for index in missing if index not in holding]
                missing = [index for index in missing if index in holding]
                state.coord.release(job.key, remote, claim)
                job.todo = job.todo + remote
                job.polling = True
                if not missing:
                    claim.finish()
                    continue
            latch.left += 1
            Generation(
                state, self.memo, self.allocator, self.inner, job, missing, claim, latch
            ).start()

    async def _wait_for_others(self, job: Job, waits: dict[Claim, list[int]]) -> list[int]:
        """Wait for indices other requests claimed; return those whose producer failed."""
        key = job.key
        served = job.served
        retry: list[int] = []
        for other, wanted in waits.items():
            values = other.values
            assert values is not None  # made by `_take` when it found the claim
            await other.wait(produced=False)
            if any(index not in values for index in wanted):
                await other.wait(produced=True)
            for index in wanted:
                if index in values:
                    served[index] = (decoded(values[index], key, index), True, False)
                else:
                    retry.append(index)
        return retry

    def abandon(self, state: LoopState, job: Job, exc: BaseException) -> None:
        """Free the claim of a job that failed or was cancelled before generating."""
        claim = job.claim
        if claim is None:  # nothing claimed, or its samples were all found
            return
        job.claim = None
        state.coord.release(job.key, job.mine, claim)
        claim.finish()
        if job.error is None and isinstance(exc, Exception):
            job.error = exc
