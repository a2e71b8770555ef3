"""The paper workflow of the README: ship a cache export and a run manifest; a stranger
imports the export into a fresh store and reproduces the run in replay mode: every
request gets its recorded samples with zero model calls, whatever their machine's timing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# The researcher's program: eight agents with random latencies ask their own question,
# then one shared question in one namespace (the shape of agents, tool use, as_completed).
PROGRAM = '''
import asyncio, json, random, sys
from cachesaver import OnlineAPI, Request, Response
from cachesaver.testing import SimulatedLLM


class Model(SimulatedLLM):
    """Each call takes a random time (seeded by the run), so agents finish in any order."""

    def __init__(self, latency_seed):
        super().__init__(seed=3)
        self.rng = random.Random(latency_seed)
        self.calls = 0

    async def request(self, request):
        self.calls += 1
        await asyncio.sleep(self.rng.random() * 0.05)
        return await super().request(request)


async def main(cache, mode, reproduce, manifest, latency_seed):
    model = Model(int(latency_seed))
    async with OnlineAPI(
        model, cache=cache, batch_size=1, timeout=0, mode=mode,
        reproduce=reproduce or None, manifest=manifest or None,
    ) as api:
        async def agent(i):
            await api.request(Request(f"agent {i}: your own view?", request_id=f"own-{i}",
                                      namespace=f"agent-{i}"))
            shared = await api.request(Request("the shared question", request_id=f"shared-{i}",
                                               namespace="shared"))
            return shared.data

        data = await asyncio.gather(*(agent(i) for i in range(8)))
    print(json.dumps({"data": data, "calls": model.calls}))


asyncio.run(main(*sys.argv[1:]))
'''


def run(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def program(cwd: Path, *args: str) -> Any:
    return json.loads(run(cwd, "program.py", *args).strip().splitlines()[-1])


def test_a_stranger_reproduces_the_shipped_run_from_a_clean_directory(tmp_path: Path) -> None:
    """export --manifest, import into a fresh store, reproduce in replay mode: zero calls."""
    author = tmp_path / "author"
    author.mkdir()
    (author / "program.py").write_text(PROGRAM)
    first = program(author, "caches/paper", "readwrite", "", "run.jsonl", "1")
    assert first["calls"] == 16
    run(
        author,
        "-m",
        "cachesaver",
        "export",
        "caches/paper",
        "samples.jsonl",
        "--manifest",
        "run.jsonl",
    )

    stranger = tmp_path / "stranger"  # a clean directory: the program and what was shipped
    stranger.mkdir()
    for name in ("program.py", "samples.jsonl", "run.jsonl"):
        shutil.copy(author / name, stranger / name)
    run(stranger, "-m", "cachesaver", "import", "samples.jsonl", "caches/replay")
    for latency_seed in ("2", "3"):  # other timings: agents finish in other orders
        again = program(stranger, "caches/replay", "replay", "run.jsonl", "", latency_seed)
        assert again["data"] == first["data"], "every agent gets its recorded samples"
        assert again["calls"] == 0, "zero model calls"
