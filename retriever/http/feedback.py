"""Feedback on answers: ``POST /v1/feedback`` (the 有帮助 / 没帮助 buttons under an opened answer).

Recorded in a rotated JSON Lines log (``serve``: ``<index>/data/feedback.jsonl``, or
``RETRIEVER_FEEDBACK_LOG``), which the workbench reads: 没帮助 queries are grouped there with the
unmatched ones. Personal data in the texts is masked before they are written; ``201 recorded``
means the record is on disk, a failed write answers 503 ``not_recorded``. With the log turned
off, feedback answers 403 ``feedback_disabled``. Rate-limited and size-limited like the other
``/v1`` routes.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Literal

from flask import Blueprint, current_app, jsonify
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..config import ServiceConfig
from ..corpus import MAX_LABEL_CHARS
from ..normalize import INVISIBLE_CHARACTERS
from .content import count_unhelpful
from .errors import ApiError
from ..privacy import masker_for
from .logs import MaskedJsonLog
from .parsing import json_body
from .schemas import normalized_within, query_error
from .state import EXTENSION, state

bp = Blueprint("feedback", __name__)
FEEDBACK = "retriever_feedback"  # app.extensions key: (request model, log or None)
MAX_COMMENT_CHARS = 500
MAX_VERSION_CHARS = 100
# JSON Schema's \s (ECMA-262) is narrower than Python's, which also counts \x1c-\x1f: the class is
# spelled out, so that the documented pattern and the check here agree on every character.
_SPACE = "\\t\\n\\v\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"
SOMETHING_VISIBLE = "[^" + _SPACE + "".join(f"\\u{ord(c):04x}" for c in sorted(INVISIBLE_CHARACTERS)) + "]"
_CODES = {"faq_id": "invalid_faq_id", "helpful": "invalid_helpful", "index_version": "invalid_index_version",
          "comment": "invalid_comment"}


def _visible(value: str) -> str:
    if not re.search(SOMETHING_VISIBLE, value):
        raise ValueError("must not be blank")
    return value


def feedback_schema(config: ServiceConfig) -> type[BaseModel]:
    """The request model, with this configuration's query limit."""

    class FeedbackRequest(BaseModel):
        """Whether an answer helped: the query, the entry shown, and 有帮助 (true) or 没帮助 (false)."""

        model_config = ConfigDict(extra="forbid")
        query: str = Field(min_length=1, max_length=config.max_query_chars, description="the query searched",
                           json_schema_extra={"pattern": SOMETHING_VISIBLE})
        faq_id: str = Field(min_length=1, max_length=MAX_LABEL_CHARS, description="the entry whose answer was read",
                            json_schema_extra={"pattern": SOMETHING_VISIBLE})
        helpful: bool = Field(description="true: 有帮助; false: 没帮助")
        index_version: str | None = Field(None, max_length=MAX_VERSION_CHARS,
                                          description="the index_version of the search response")
        comment: str | None = Field(None, max_length=MAX_COMMENT_CHARS, description="free text from the person")
        _query_visible = field_validator("query")(_visible)
        _faq_id_visible = field_validator("faq_id")(_visible)
        _normalized = field_validator("query")(normalized_within(config.max_query_chars))

    return FeedbackRequest


class FeedbackResponse(BaseModel):
    status: Literal["recorded"]


def feedback_error(exc: ValidationError, config: ServiceConfig) -> tuple[str, str]:
    """(code, message) for an invalid feedback request."""
    error = exc.errors()[0]
    field = error["loc"][0] if error["loc"] else None
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown_field", f"unknown field '{field}'; allowed: query, faq_id, helpful, index_version, comment"
    if field == "query":
        return query_error(error, config)
    if field == "helpful":
        return "invalid_helpful", "'helpful' must be true (有帮助) or false (没帮助)"
    if field == "comment" and kind == "string_too_long":
        return "comment_too_long", f"'comment' is longer than {MAX_COMMENT_CHARS} characters"
    where = field or "body"
    return _CODES.get(field, "invalid_request"), f"{where}: {error['msg']}"


class FeedbackLog(MaskedJsonLog):
    """Feedback, one JSON object a line, with the unmatched log's masking, rotation and retention."""

    def record(self, feedback: BaseModel, served_version: str | None) -> None:
        """Write one feedback record to disk; OSError if it could not be (nothing partial is left)."""
        fields = feedback.model_dump()
        texts = {key: self.masker(value) for key, value in fields.items() if isinstance(value, str) and key != "query"}
        self.append({"ts": datetime.now(timezone.utc).isoformat(timespec="seconds"), **fields, **texts,
                     **self.masked_text(fields["query"]), "served_version": served_version})


@bp.record_once
def _setup(setup) -> None:
    config = setup.app.extensions[EXTENSION].config
    log = FeedbackLog(config.feedback_log, masker_for(config), config.log_retention_days) \
        if config.feedback_log else None
    setup.app.extensions[FEEDBACK] = (feedback_schema(config), log)


@bp.post("/v1/feedback")
def feedback():
    """Record whether an answer helped."""
    shared = state()
    schema, log = current_app.extensions[FEEDBACK]
    if log is None:
        raise ApiError(403, "feedback_disabled", "feedback is not recorded here: the feedback log is turned off "
                       "(RETRIEVER_FEEDBACK_LOG=off)")
    try:
        parsed = schema.model_validate(json_body(shared.config.max_body_bytes), strict=True)
    except ValidationError as exc:
        raise ApiError(400, *feedback_error(exc, shared.config)) from None
    served = shared.holder.current
    try:
        log.record(parsed, served.version if served else None)
    except OSError as exc:
        current_app.logger.warning("feedback not recorded: %s", exc.strerror or exc)
        raise ApiError(503, "not_recorded", "the feedback could not be saved (the server's disk may be full); "
                       "it was not recorded, try again later") from None
    if not parsed.helpful:
        count_unhelpful(parsed.faq_id)  # the entry's 没帮助 count (retriever/editorial/hits.py)
    return jsonify({"status": "recorded"}), 201
