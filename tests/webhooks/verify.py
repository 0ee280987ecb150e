"""Verifies webhook requests partway sent with the Standard Webhooks reference library
(PyPI `standardwebhooks`), independent of partway's own signing code.

Reads one JSON object per line on stdin: {"secret": "whsec_…", "headers": {…}, "body": "…"};
prints one line per request: "ok" or "bad: <reason>".
"""
import json
import sys

from standardwebhooks.webhooks import Webhook

for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    request = json.loads(line)
    try:
        Webhook(request["secret"]).verify(request["body"], request["headers"])
        print("ok", flush=True)
    except Exception as e:  # noqa: BLE001 - any failure is a bad signature here
        print(f"bad: {type(e).__name__}: {e}", flush=True)
