"""The public surface: __all__ is honest, seed import paths work, types are shipped."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import cachesaver

ROOT = Path(__file__).resolve().parent.parent


def test_all_names_exist_and_nothing_public_is_missing() -> None:
    """__all__ lists every public name the package module holds (and only names it has)."""
    public = {
        name
        for name, value in vars(cachesaver).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "TYPE_CHECKING"
    }
    assert public <= set(cachesaver.__all__), "everything public is listed"
    for name in set(cachesaver.__all__) - public:  # listed, imported on first use
        assert getattr(cachesaver, name) is not None, name
    assert sorted(cachesaver.__all__) == cachesaver.__all__


def test_every_error_and_pipeline_is_exported_at_the_top() -> None:
    """Every error class, pipeline and stage the package defines is importable from cachesaver."""
    import cachesaver.errors
    import cachesaver.pipelines

    for module in (cachesaver.errors, cachesaver.pipelines):
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, type) and name != "Pipeline":
                assert name in cachesaver.__all__, f"{module.__name__}.{name}"
    for name in ("AsyncCacher", "AsyncBatcher", "AsyncDeduplicator", "Request", "Store"):
        assert name in cachesaver.__all__, name


def test_seed_import_paths_work() -> None:
    """The import paths of the researcher's notebook keep working."""
    from cachesaver.pipelines import LocalAPI, OnlineAPI
    from cachesaver.typedefs import Batch, BatchRequestModel, Request, Response, SingleRequestModel

    assert OnlineAPI is cachesaver.OnlineAPI and LocalAPI is cachesaver.LocalAPI
    assert (Request, Batch, Response) == (cachesaver.Request, cachesaver.Batch, cachesaver.Response)
    assert SingleRequestModel is cachesaver.SingleRequestModel
    assert BatchRequestModel is cachesaver.BatchRequestModel


def test_errors_share_one_root_and_fitting_builtins() -> None:
    """Every error is a CacheSaverError and also the builtin whose meaning it shares."""
    assert issubclass(cachesaver.InvalidRequestError, ValueError)
    assert issubclass(cachesaver.InvalidRequestError, TypeError)
    assert issubclass(cachesaver.UnstorableSampleError, TypeError)
    assert issubclass(cachesaver.ModelContractError, RuntimeError)
    assert issubclass(cachesaver.PipelineClosedError, RuntimeError)
    assert issubclass(cachesaver.StoreError, RuntimeError)
    assert issubclass(cachesaver.CacheMissError, LookupError)
    for name in cachesaver.__all__:
        obj = getattr(cachesaver, name)
        if isinstance(obj, type) and issubclass(obj, Warning):
            assert issubclass(obj, cachesaver.CacheSaverWarning), name
        elif isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, cachesaver.CacheSaverError), name


def test_package_ships_py_typed() -> None:
    """py.typed is in the package so type checkers use our annotations."""
    assert (Path(cachesaver.__file__).parent / "py.typed").exists()


def test_quickstart_runs_offline_and_shows_flags_and_replay() -> None:
    """examples/quickstart.py works with no API key and shows flags and a replay."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    ).stdout
    assert "cached=[False, False], duplicated=[False, True]" in out
    assert "cached=[True, True]" in out
    assert out.count("model calls: 0") == 2
