"""Counting what a test's code sends to Redis (round trips are deterministic: tested
where they are the point of a change, never timed)."""

from __future__ import annotations

import contextvars
from typing import Any

import pytest

from tinytown.store.records import Store


def record_commands(monkeypatch: pytest.MonkeyPatch, store: Store) -> list[list[str]]:
    """Every command ``store``'s client sends from now on (a wrapper around the client);
    a script call is recorded as ``["SCRIPT", *keys, *args]``, a pipeline as its commands."""
    sent: list[list[str]] = []
    inside = contextvars.ContextVar("inside", default=False)  # a script's own EVALSHA
    redis = store.redis
    execute, pipeline, run_script = redis.execute, redis.pipeline, redis.run_script

    async def counted_execute(*args: Any, **kw: Any) -> Any:
        if not inside.get():
            sent.append([str(a) for a in args])
        return await execute(*args, **kw)

    async def counted_pipeline(commands: Any, *a: Any, **kw: Any) -> Any:
        sent.extend([str(x) for x in command] for command in commands)
        return await pipeline(commands, *a, **kw)

    async def counted_script(script: Any, keys: Any, args: Any) -> Any:
        sent.append(["SCRIPT", *map(str, keys), *map(str, args)])
        token = inside.set(True)
        try:
            return await run_script(script, keys, args)
        finally:
            inside.reset(token)

    monkeypatch.setattr(redis, "execute", counted_execute)
    monkeypatch.setattr(redis, "pipeline", counted_pipeline)
    monkeypatch.setattr(redis, "run_script", counted_script)
    return sent
