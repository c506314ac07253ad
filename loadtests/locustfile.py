"""Entry point for locust: streaming chat users, a profile-driven load shape, SLO verdicts.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8080 --load-profile smoke --headless
    locust -f loadtests/locustfile.py --host https://llm.example.com --load-profile chat   # web UI

Usually run through ``loadtests/run.py`` (``make loadtest``), which also writes the HTML report.
The code lives in ``llmload/`` (locust puts this file's folder on ``sys.path``); the profile
decides which of these users run and how many.
"""

from llmload import hooks  # noqa: F401  (registers the options, the set-up and the verdict)
from llmload.users import ChatUser, ConversationUser, LongContextUser, ProfileShape

__all__ = ["ChatUser", "ConversationUser", "LongContextUser", "ProfileShape"]
