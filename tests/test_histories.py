"""Logs recorded by earlier versions still decode, fold and verify (schema evolution)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from zart_es.core import TERMINAL_STATES, fold
from zart_es.store import to_event, verify_chain

pytestmark = pytest.mark.pure

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.msgpack"))


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.msgpack.decode(path.read_bytes())
    return data


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
def test_recorded_logs_decode_fold_and_verify(path: Path) -> None:
    logs = _load(path)
    assert logs
    for execution_id, log in logs.items():
        raw = [{k.encode(): v if isinstance(v, bytes) else str(v).encode()
                for k, v in fields.items()} for _, fields in log["entries"]]
        assert verify_chain(raw, log["last_hash"]) is None, execution_id
        events = [to_event(entry_id.encode(), fields)
                  for (entry_id, _), fields in zip(log["entries"], raw, strict=True)]
        state = fold(events)
        assert state.execution_id == execution_id
        assert state.status in TERMINAL_STATES
        assert state.version == len(events)


def test_tampering_is_detected() -> None:
    log = next(iter(_load(HISTORIES[0]).values()))
    raw = [{k.encode(): v if isinstance(v, bytes) else str(v).encode()
            for k, v in fields.items()} for _, fields in log["entries"]]
    body = raw[2][b"e"]
    raw[2][b"e"] = body.replace(b"item", b"itex") if b"item" in body else body + b"\x00"
    broken = verify_chain(raw, log["last_hash"])
    assert broken is not None
    assert broken.index == 3  # the entry after the edited one no longer links
    assert (broken.kind, broken.seq) == ("changed", 2)  # ... and names the edited one
    dropped = raw[:1] + raw[2:]
    broken = verify_chain(dropped)
    assert broken is not None
    assert broken.index == 1
    assert (broken.kind, broken.seq) == ("missing", 1)
    assert "seq 1 missing" in broken.reason
