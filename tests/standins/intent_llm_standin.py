#!/usr/bin/env python3
"""A STAND-IN for an OpenAI-compatible LLM provider (a paid service), for the LLM matcher's
tests only: it speaks the Chat Completions wire format (`POST /v1/chat/completions`,
`Authorization: Bearer KEY`, `{"choices": [{"message": {"role", "content"}}], "usage"}`) and
answers every request with the reply given on the command line (the JSON the matcher should
see). GET /stats returns {"calls": N, "requests": [the request bodies]}; the port is printed on
the first line.

Usage: intent_llm_standin.py KEY REPLY
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEY, REPLY = sys.argv[1], sys.argv[2]
LOCK = threading.Lock()
REQUESTS = []


class Handler(BaseHTTPRequestHandler):
    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/stats":
            with LOCK:
                self._send(200, {"calls": len(REQUESTS), "requests": REQUESTS})
        else:
            self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            self._send(401, {"error": {"message": "Incorrect API key provided",
                                       "type": "invalid_request_error", "param": None,
                                       "code": "invalid_api_key"}})
            return
        with LOCK:
            REQUESTS.append(body)
        self._send(200, {
            "id": "chatcmpl-standin", "object": "chat.completion", "created": 1,
            "model": body.get("model", ""),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
        })

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
