#!/usr/bin/env python3
"""A STAND-IN for the Brave Search API (a paid service), for weft's tests only.

It speaks the wire format of Brave's Web Search endpoint:
  GET /res/v1/web/search?q=...&count=N with the `X-Subscription-Token` header; answers
  {"type": "search", "query": {...}, "mixed": {...}, "web": {"type": "search", "results": [
  {"title", "url", "description", "is_source_local", "profile", "meta_url", "age", ...}]}}, or
  Brave's error shape {"type": "ErrorResponse", "error": {"id", "status", "code", "detail",
  "meta"}, "time"} (401 without a token, 422 with a wrong one or a count over 20).
Which pages it "finds" is up to the test: argv[2] is a JSON file with a list of
{title, url, description} returned for every query, or an object of such lists by query with
"*" for any other (the first `count` of them), with the query's words wrapped in <strong> in
the descriptions as Brave does. With nothing found the answer has no "web" key, as Brave's.
GET /stats returns {"calls": N, "queries": [{"q", "count", "token"}]} where token is "ok",
"missing" or "wrong"; the port is printed on the first line.

Usage: brave_standin.py TOKEN RESULTS.json
"""

import json
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = sys.argv[1]
with open(sys.argv[2]) as f:
    RESULTS = json.load(f)
LOCK = threading.Lock()
CALLS = []


def error(status, code, detail):
    return status, {
        "type": "ErrorResponse",
        "error": {"id": "0b5f3c2e-standin", "status": status, "code": code, "detail": detail,
                  "meta": {"component": "authentication" if status == 401 else "validation"}},
        "time": int(time.time()),
    }


def emphasize(text, query):
    for word in sorted(set(query.split()), key=len, reverse=True):
        if len(word) > 2:
            text = re.sub(rf"(?i)\b({re.escape(word)})\b", r"<strong>\1</strong>", text)
    return text


def result(item, query):
    parsed = urllib.parse.urlparse(item["url"])
    return {
        "title": item["title"],
        "url": item["url"],
        "is_source_local": False,
        "is_source_both": False,
        "description": emphasize(item["description"], query),
        "page_age": "2026-10-02T08:15:00",
        "profile": {"name": parsed.hostname, "url": f"{parsed.scheme}://{parsed.netloc}",
                    "long_name": parsed.hostname, "img": ""},
        "language": "en",
        "family_friendly": True,
        "type": "search_result",
        "subtype": "generic",
        "is_live": False,
        "meta_url": {"scheme": parsed.scheme, "netloc": parsed.netloc, "hostname": parsed.hostname,
                     "favicon": "", "path": "› " + parsed.path.strip("/").replace("/", " › ")},
        "age": "October 2, 2026",
    }


def search(query, count, token):
    with LOCK:
        CALLS.append({"q": query, "count": count,
                      "token": "missing" if token is None else ("ok" if token == TOKEN else "wrong")})
    if token is None:
        return error(401, "SUBSCRIPTION_TOKEN_MISSING", "The request requires a subscription token.")
    if token != TOKEN:
        return error(422, "SUBSCRIPTION_TOKEN_INVALID", "The provided subscription token is invalid.")
    if not query:
        return error(422, "VALIDATION", "Unable to validate request parameter(s): q is required.")
    if count < 1 or count > 20:
        return error(422, "VALIDATION", "Unable to validate request parameter(s): count must be 1 to 20.")
    found = RESULTS.get(query, RESULTS.get("*", [])) if isinstance(RESULTS, dict) else RESULTS
    results = [result(item, query) for item in found[:count]]
    answer = {
        "query": {"original": query, "show_strict_warning": False, "is_navigational": False,
                  "is_news_breaking": False, "spellcheck_off": True, "country": "us",
                  "bad_results": False, "should_fallback": False, "postal_code": "", "city": "",
                  "header_country": "", "more_results_available": len(found) > count, "state": ""},
        "mixed": {"type": "mixed",
                  "main": [{"type": "web", "index": i, "all": False} for i in range(len(results))],
                  "top": [], "side": []},
        "type": "search",
    }
    if results:
        answer["web"] = {"type": "search", "results": results, "family_friendly": True}
    return 200, answer


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json; charset=utf-8")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path == "/stats":
            with LOCK:
                return self.reply(200, {"calls": len(CALLS), "queries": list(CALLS)})
        if url.path == "/res/v1/web/search":
            params = urllib.parse.parse_qs(url.query)
            query = params.get("q", [""])[0]
            try:
                count = int(params.get("count", ["20"])[0])
            except ValueError:
                count = 0
            return self.reply(*search(query, count, self.headers.get("X-Subscription-Token")))
        self.reply(404, {"type": "ErrorResponse", "error": {"status": 404, "code": "NOT_FOUND",
                                                             "detail": "Not found."}})


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
