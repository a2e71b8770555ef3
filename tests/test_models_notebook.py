"""A real Jupyter kernel runs the sync client and an async pipeline, cells re-run."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cachesaver.testing.server import FakeLLMServer

nbformat: Any = None
NotebookClient: Any = None
try:
    import nbformat
    from nbclient import NotebookClient
except ImportError:  # pragma: no cover - the test extra installs them
    pass


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as running:
        yield running


def _require_jupyter() -> None:
    if NotebookClient is None:
        message = "nbclient/ipykernel are not installed (pip install 'cachesaver[test]')"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " and CI=true")
        pytest.skip(message)


def _cells(server: FakeLLMServer, cache: str) -> list[str]:
    return [
        # 0: the sync drop-in client, made once
        f"""
import json
from cachesaver.models.openai import OpenAI, AsyncOpenAI
client = OpenAI(cache={cache!r}, base_url={server.openai_base_url!r}, api_key="t")
answers = []
""",
        # 1: a sync call (the kernel's own event loop is running)
        """
c = client.chat.completions.create(
    model="fake-chat", messages=[{"role": "user", "content": "hi"}], namespace="nb"
)
answers.append(c.choices[0].message.content)
print(json.dumps({"sync": answers[-1], "cached": c.choices[0].cached}))
""",
        # 2: an async pipeline with top-level await, as researchers write it
        f"""
from cachesaver import OnlineAPI
from cachesaver.models import ChatRequest
from cachesaver.models.openai import OpenAIModel
import openai
sdk = openai.AsyncOpenAI(base_url={server.openai_base_url!r}, api_key="t")
async with OnlineAPI(OpenAIModel(sdk, "fake-chat"), cache={cache!r}) as pipeline:
    r = await pipeline.request(ChatRequest("hi there", n=2, namespace="nb"))
print(json.dumps({{"pipeline": r.data, "cached": r.cached}}))
""",
        # 3: the async drop-in client in the kernel's loop
        f"""
async with AsyncOpenAI(cache={cache!r}, base_url={server.openai_base_url!r}, api_key="t") as a:
    d = await a.chat.completions.create(
        model="fake-chat", messages=[{{"role": "user", "content": "hi"}}], namespace="nb"
    )
print(json.dumps({{"async": d.choices[0].message.content}}))
""",
    ]


def _last_json(cell: Any) -> dict[str, Any]:
    text = ""
    for output in cell.outputs:
        if output.get("output_type") == "error":
            raise AssertionError(f"cell failed: {output['ename']}: {output['evalue']}")
        if output.get("name") == "stdout":
            text += output["text"]  # a print may arrive in several stream messages
    lines = [line for line in text.splitlines() if line.startswith("{")]
    if not lines:
        raise AssertionError(f"no output: {cell.outputs}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


@pytest.mark.timeout(240)  # a kernel starts in seconds, slower on a loaded machine
def test_sync_client_and_async_pipeline_in_a_jupyter_kernel(
    server: FakeLLMServer, tmp_path: Path
) -> None:
    """Cells run and re-run under ipykernel: fresh draws, cache hits, no loop errors."""
    _require_jupyter()
    cache = str(tmp_path / "cache")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(src) for src in _cells(server, cache)]
    notebook.cells.append(nbformat.v4.new_code_cell("client.close()"))
    client = NotebookClient(
        notebook,
        timeout=120,
        startup_timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with client.setup_kernel(env=env):
        cells = notebook.cells
        for index in range(4):
            client.execute_cell(cells[index], index)
        first = [_last_json(cells[i]) for i in (1, 2, 3)]
        for index in (1, 2, 3, 1):  # re-run cells, as in a notebook session
            client.execute_cell(cells[index], index)
        again_sync = _last_json(cells[1])
        client.execute_cell(cells[2], 2)
        again_pipeline = _last_json(cells[2])
        client.execute_cell(cells[4], 4)
    assert first[0]["cached"] is False
    assert again_sync["sync"] != first[0]["sync"]  # the same client draws fresh samples
    assert first[1]["cached"] == [False, False]
    assert again_pipeline == {"pipeline": first[1]["pipeline"], "cached": [True, True]}
    assert first[2]["async"] == first[0]["sync"]  # a new run replays namespace nb
