#!/usr/bin/env python3
"""A STAND-IN for an OpenAI-compatible LLM provider (a paid service), for weft's tests only.

It speaks the Chat Completions wire format that `llm.chat` uses for `kind = "openai"`:
  POST /v1/chat/completions with `Authorization: Bearer KEY` and {model, messages, ...};
  answers {"id", "object": "chat.completion", "created", "model", "choices": [{"index",
  "message": {"role": "assistant", "content"}, "finish_reason": "stop"}], "usage":
  {"prompt_tokens", "completion_tokens", "total_tokens"}}, or OpenAI's error shape
  {"error": {"message", "type", "param", "code"}} (401 for a wrong key).
The reply is deterministic and built from the prompt, so a test can tell what reached the
model: it names the "Research question:" line and every "[n] Title <url>" source line; to a
prompt opening "Write an outreach email to NAME." it answers an email to NAME naming the
prompt's "Owner:" and "Offer:" lines.
Token counts are words (whitespace-separated) of the messages and of the reply.
GET /stats returns {"calls": N, "requests": [{"model", "system", "prompt"}]}; the port is
printed on the first line.

Usage: openai_standin.py KEY
"""

import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEY = sys.argv[1]
LOCK = threading.Lock()
REQUESTS = []


def text_of(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def reply_for(messages):
    prompt = "\n".join(text_of(m.get("content")) for m in messages if m.get("role") == "user")
    outreach = re.match(r"Write an outreach email to (.*)\.$", prompt, re.M)
    if outreach:
        owner = re.search(r"^Owner: (.*)$", prompt, re.M)
        offer = re.search(r"^Offer: (.*)$", prompt, re.M)
        return (f"Subject: A quick idea for {outreach.group(1)}\n\n"
                f"Hello {owner.group(1) if owner else outreach.group(1) + ' team'},\n\n"
                f"We would like to offer you {offer.group(1) if offer else 'our help'}.")
    question = re.search(r"^Research question: (.*)$", prompt, re.M)
    sources = re.findall(r"^\[(\d+)\] (.*?) <([^>]*)>$", prompt, re.M)
    lines = [f"**Stand-in summary** of \"{question.group(1) if question else '?'}\" "
             f"from {len(sources)} sources."]
    for n, title, url in sources:
        lines.append(f"- {title} [{n}]")
    return "\n".join(lines)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/stats":
            with LOCK:
                return self.reply(200, {"calls": len(REQUESTS), "requests": list(REQUESTS)})
        self.reply(404, {"error": {"message": "Not found", "type": "invalid_request_error",
                                   "param": None, "code": None}})

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path != "/v1/chat/completions":
            return self.reply(404, {"error": {"message": f"Unknown path {self.path}",
                                              "type": "invalid_request_error", "param": None,
                                              "code": None}})
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            return self.reply(401, {"error": {"message": "Incorrect API key provided.",
                                              "type": "invalid_request_error", "param": None,
                                              "code": "invalid_api_key"}})
        messages = body.get("messages") or []
        with LOCK:
            REQUESTS.append({
                "model": body.get("model"),
                "system": "\n".join(text_of(m.get("content")) for m in messages
                                    if m.get("role") == "system"),
                "prompt": "\n".join(text_of(m.get("content")) for m in messages
                                    if m.get("role") == "user"),
            })
        content = reply_for(messages)
        prompt_tokens = sum(len(text_of(m.get("content")).split()) for m in messages)
        completion_tokens = len(content.split())
        self.reply(200, {
            "id": f"chatcmpl-standin-{len(REQUESTS)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or "stand-in-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
