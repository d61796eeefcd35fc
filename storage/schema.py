"""What both databases' schemas share: migrations as named steps, and the views over arrays in a body.

Each backend keeps its own steps (storage/sqlite/schema.py, storage/postgres/schema.py), in its own SQL
dialect; tests/test_schema_drift.py fails when their tables, columns, indexes or views differ.
"""

from __future__ import annotations

from dataclasses import dataclass


class SchemaTooNew(RuntimeError):
    """The file was migrated by a newer version of this program."""


@dataclass(frozen=True)
class Migration:
    name: str
    statements: tuple[str, ...]


def _same(*names: str) -> tuple[tuple[str, str], ...]:
    return tuple((name, name) for name in names)


# The views over arrays in a body, on both databases: (view, the array under "call", the
# name of the position column, (column, field) for each field of the array's objects).
CALL_VIEW_FIELDS: tuple[tuple[str, str, str, tuple[tuple[str, str], ...]], ...] = (
    (
        "call_transcripts",
        "asr_result",
        "turn",
        (("time", "time"), ("robot_text", "robottext"), ("person_text", "text")),
    ),
    (
        "call_answers",
        "question_answer",
        "position",
        _same(
            "question_name",
            "question_content",
            "question_type",
            "answer",
            "answer_text",
            "answer_text_slot",
            "var",
            "status",
            "verification_results",
            "whether_answer",
        ),
    ),
    (
        "call_redials",
        "redial_call",
        "position",
        (
            ("redial_call_id", "call_id"),
            *_same(
                "call_start_time",
                "ring_type",
                "ring_time",
                "hangup_type",
                "result_label",
                "callee_number",
                "caller_number",
            ),
        ),
    ),
)
