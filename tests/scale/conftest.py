"""The streaming tests interrupt runs after a given chunk: each chunk is checkpointed there (a test of the default
interval sets it back)."""
import pytest


@pytest.fixture(autouse=True)
def checkpoint_after_every_chunk(monkeypatch):
    from thalweg.scale import stream

    monkeypatch.setattr(stream, "CHECKPOINT_SECONDS", 0.0)
