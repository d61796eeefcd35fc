"""The SQL views over stored bodies, read from the file the way an operator would."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.support import SAMPLE_BYTES, ClientFactory, both_backends, execute, rows, sample

pytestmark = both_backends

SAMPLE = orjson.loads(SAMPLE_BYTES)
CALL_ID = SAMPLE["call"]["call_id"]


async def stored_sample(make_client: ClientFactory) -> None:
    client = await make_client()
    assert (await client.post("/push", data=SAMPLE_BYTES)).status == 200


async def test_call_transcripts_has_one_row_per_turn(make_client: ClientFactory, db_path: Path) -> None:
    await stored_sample(make_client)
    turns = rows(db_path, "SELECT * FROM call_transcripts WHERE call_id = ? ORDER BY turn", (CALL_ID,))
    expected = [(t["time"], t["robottext"], t["text"]) for t in SAMPLE["call"]["asr_result"]]
    assert [(r["time"], r["robot_text"], r["person_text"]) for r in turns] == expected
    assert [r["turn"] for r in turns] == list(range(8))
    assert {r["seq"] for r in turns} == {1}


async def test_call_labels(make_client: ClientFactory, db_path: Path) -> None:
    await stored_sample(make_client)
    labels = rows(db_path, "SELECT label, value FROM call_labels WHERE call_id = ?", (CALL_ID,))
    assert {r["label"]: r["value"] for r in labels} == SAMPLE["call"]["multi_label"]


async def test_call_answers(make_client: ClientFactory, db_path: Path) -> None:
    await stored_sample(make_client)
    (answer,) = rows(db_path, "SELECT * FROM call_answers")
    (documented,) = SAMPLE["call"]["question_answer"]
    assert {name: answer[name] for name in documented} == documented
    assert answer["position"] == 0


async def test_call_redials(make_client: ClientFactory, db_path: Path, backend: str) -> None:
    await stored_sample(make_client)
    redials = rows(db_path, "SELECT * FROM call_redials ORDER BY position")
    assert [r["redial_call_id"] for r in redials] == [r["call_id"] for r in SAMPLE["call"]["redial_call"]]
    # SQLite gives a JSON number as a number; PostgreSQL's view columns are text (docs/data.md).
    as_stored = str if backend == "postgresql" else (lambda value: value)
    assert [(r["ring_time"], r["result_label"], r["caller_number"]) for r in redials] == [
        (as_stored(r["ring_time"]), r["result_label"], r["caller_number"]) for r in SAMPLE["call"]["redial_call"]
    ]


async def test_odd_or_dropped_bodies_yield_no_rows_and_no_error(make_client: ClientFactory, db_path: Path) -> None:
    client = await make_client()
    # Sections of the wrong shape are stored (with warnings) and must not break the views.
    odd = sample(call_id="odd", asr_result="not a list", multi_label=["x"], question_answer={}, redial_call=[1, 2])
    assert (await client.post("/push", data=orjson.dumps(odd))).status == 200
    assert (await client.post("/push", data=orjson.dumps(sample(call_id="purged")))).status == 200
    execute(db_path, "UPDATE pushes SET body = NULL WHERE call_id = 'purged'")
    for view in ("call_transcripts", "call_labels", "call_answers", "call_redials"):
        assert rows(db_path, f"SELECT count(*) FROM {view}")[0][0] == 0, view
