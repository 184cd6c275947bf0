"""gunicorn configuration of the HTTP benchmark (read by path, before the app is loaded).

``bench/`` holds ``http.py``: put it at the *end* of ``sys.path`` so that the standard
library's ``http`` package wins and the bench-only modules (``_http_wsgi`` ...) are found.
"""

from __future__ import annotations

import sys
from pathlib import Path

_BENCH = str(Path(__file__).resolve().parent)
_REPO = str(Path(__file__).resolve().parent.parent)
sys.path[:] = [p for p in sys.path if p and str(Path(p).resolve()) != _BENCH]
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)
sys.path.append(_BENCH)

worker_class = "sync"
accesslog = None
