"""A stand-in external agent that spends its time the way real ones do: waiting on its model.

Usage: waiting_agent.py PROMPT_FILE HANDOFF_FILE API_BASE. Its task title is `write PATH: CONTENT`: it writes
the file in the current directory (the worktree), asks its model one question (POST API_BASE/chat/completions,
through HTTP(S)_PROXY when one is set, with the key in OPENAI_API_KEY), then writes its handoff as JSON with
the tokens its model reported and, in `findings`, when it started and when its model answered (Unix times:
the scale bench reads them). Standard library only: it runs inside the sandbox with `python -I`.
"""

import json
import os
import re
import sys
import time
import urllib.request
from pathlib import Path


def main(prompt_file: str, handoff_file: str, api_base: str) -> int:
    started_at = time.time()
    title = re.search(r"Your task: (.*)", Path(prompt_file).read_text()).group(1)
    path, _, content = title.removeprefix("write ").partition(": ")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(content + "\n")
    body = json.dumps({"model": "scripted", "messages": [{"role": "user", "content": f"waiting agent: {title}"}]})
    request = urllib.request.Request(f"{api_base}/chat/completions", data=body.encode(), method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {os.environ.get('OPENAI_API_KEY', '')}"})
    with urllib.request.urlopen(request, timeout=3600) as answer:
        usage = json.load(answer).get("usage") or {}
    answered_at = time.time()
    Path(handoff_file).write_text(json.dumps({
        "summary": f"waiting agent wrote {path}", "tokens": int(usage.get("total_tokens") or 0),
        "findings": f"started_at={started_at:.3f} answered_at={answered_at:.3f}"}))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
