"""Keep secrets out of every log line, whoever logs it (Gavel, Faust, MLflow, clients).

Redaction works at record creation, so it holds whatever handlers a library installs
later (Faust sets up its own).

>>> import logging
>>> redact_secrets(["hunter2"])
>>> record = logging.getLogger("demo").makeRecord("demo", 20, "f", 1, "pw=%s", ("hunter2",), None)
>>> record.getMessage()
'pw=***'
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

MASK = "***"
_secrets: set[str] = set()
_base_factory = logging.getLogRecordFactory()


def redact(text: str) -> str:
    """``text`` with every registered secret masked."""
    for secret in _secrets:
        text = text.replace(secret, MASK)
    return text


def redact_secrets(secrets: Iterable[str]) -> None:
    """Mask these values in every log record from now on (values under 4 characters
    are ignored: masking them would mangle ordinary words)."""
    _secrets.update(s for s in secrets if len(s) >= 4)
    if _secrets and logging.getLogRecordFactory() is not _make_record:
        logging.setLogRecordFactory(_make_record)


def _make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: leave it to logging to report
        return record
    redacted = redact(message)
    if redacted != message:
        record.msg, record.args = redacted, None
    if record.exc_info and record.exc_info[1] is not None:
        error = record.exc_info[1]
        if redact(str(error)) != str(error):
            # The traceback would print the secret; keep only the redacted summary.
            record.msg = f"{record.msg} ({type(error).__name__}: {redact(str(error))})"
            record.args, record.exc_info = None, None
    return record
