#!/usr/bin/env python3
"""A STAND-IN for GitHub's REST API (deployments), for weft's tests only.

It speaks the wire format of GitHub's deployments endpoints:
  GET /repos/{owner}/{repo}/deployments[?environment=&per_page=] -> a list of deployments,
      newest first: {url, id, node_id, sha, ref, task, payload, original_environment,
      environment, description, creator {login, id, ...}, created_at, updated_at,
      statuses_url, repository_url, transient_environment, production_environment}
  GET /repos/{owner}/{repo}/deployments/{id}/statuses -> a list of statuses, newest first:
      {url, id, node_id, state, creator, description, environment, target_url, log_url,
      created_at, updated_at, deployment_url, repository_url, environment_url}
  Errors as GitHub sends them: {"message", "documentation_url", "status"}; 403 without a
  User-Agent, 404 for an unknown repository or a private one asked without its token.
URLs inside the documents point back at this server (from the request's Host header).

Repositories (made up, deterministic):
  acme/shop     three deployments; the latest (1003, production) failed its build
  acme/private  private: needs `Authorization: Bearer TOKEN`; one successful deployment
  acme/empty    no deployments
GET /stats returns {"calls": N, "requests": [{"path", "authorization"}]} where authorization
is "ok", "missing" or "wrong"; the port is printed on the first line.

Usage: github_standin.py TOKEN
"""

import json
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = sys.argv[1]
LOCK = threading.Lock()
CALLS = []

USERS = {
    "octocat": {"login": "octocat", "id": 583231, "type": "User", "site_admin": False},
    "deploy-bot": {"login": "deploy-bot[bot]", "id": 41898282, "type": "Bot", "site_admin": False},
}

# (id, sha, ref, environment, created_at, creator, description, statuses oldest first:
#  (state, at, description, log path))
REPOS = {
    "acme/shop": {"private": False, "deployments": [
        (1001, "9fceb02d0ae598e95dc970b74767f19372d61af8", "main", "production",
         "2026-11-20T10:00:00Z", "deploy-bot", "Deploy main to production",
         [("queued", "2026-11-20T10:00:03Z", "Queued", None),
          ("in_progress", "2026-11-20T10:00:40Z", "Building", "/actions/runs/501"),
          ("success", "2026-11-20T10:04:55Z", "Deployed 9fceb02", "/actions/runs/501")]),
        (1002, "e5bd3914e2e596debea16f433f57875b5b90bcd6", "main", "staging",
         "2026-11-24T09:00:00Z", "deploy-bot", "Deploy main to staging",
         [("success", "2026-11-24T09:03:10Z", "Deployed e5bd391", "/actions/runs/502")]),
        (1003, "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678", "release/2.4", "production",
         "2026-11-25T14:00:00Z", "octocat", "Release 2.4",
         [("queued", "2026-11-25T14:00:02Z", "Queued", None),
          ("in_progress", "2026-11-25T14:00:30Z", "Building", "/actions/runs/503"),
          ("failure", "2026-11-25T14:06:10Z", "Build failed: `npm run build` exited with code 1",
           "/actions/runs/503")]),
    ]},
    "acme/private": {"private": True, "deployments": [
        (2001, "0123456789abcdef0123456789abcdef01234567", "main", "production",
         "2026-11-23T08:00:00Z", "octocat", "Deploy main",
         [("success", "2026-11-23T08:02:00Z", "Deployed 0123456", "/actions/runs/601")]),
    ]},
    "acme/empty": {"private": False, "deployments": []},
}

DOCS = "https://docs.github.com/rest/deployments"


def deployment_doc(base, repo, d):
    (id_, sha, ref, env, created, creator, description, statuses) = d
    url = f"{base}/repos/{repo}/deployments/{id_}"
    return {
        "url": url, "id": id_, "node_id": f"DE_kwDOstandin{id_}", "sha": sha, "ref": ref,
        "task": "deploy", "payload": {}, "original_environment": env, "environment": env,
        "description": description, "creator": USERS[creator], "created_at": created,
        "updated_at": statuses[-1][1] if statuses else created,
        "statuses_url": f"{url}/statuses", "repository_url": f"{base}/repos/{repo}",
        "transient_environment": False, "production_environment": env == "production",
    }


def status_docs(base, repo, d):
    (id_, _sha, _ref, env, _created, creator, _description, statuses) = d
    docs = []
    for n, (state, at, description, log) in enumerate(statuses):
        log_url = f"https://github.com/{repo}{log}" if log else ""
        docs.append({
            "url": f"{base}/repos/{repo}/deployments/{id_}/statuses/{id_ * 10 + n}",
            "id": id_ * 10 + n, "node_id": f"DES_kwDOstandin{id_ * 10 + n}", "state": state,
            "creator": USERS[creator], "description": description, "environment": env,
            "target_url": log_url, "log_url": log_url, "created_at": at, "updated_at": at,
            "deployment_url": f"{base}/repos/{repo}/deployments/{id_}",
            "repository_url": f"{base}/repos/{repo}",
            "environment_url": f"https://{env}.shop.example" if state == "success" else "",
        })
    return list(reversed(docs))


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json; charset=utf-8")
        self.send_header("x-github-media-type", "github.v3; format=json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def not_found(self):
        self.reply(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path == "/stats":
            with LOCK:
                return self.reply(200, {"calls": len(CALLS), "requests": list(CALLS)})
        auth = self.headers.get("Authorization")
        with LOCK:
            CALLS.append({"path": self.path, "authorization":
                          "missing" if auth is None else ("ok" if auth == f"Bearer {TOKEN}" else "wrong")})
        if not self.headers.get("User-Agent"):
            return self.reply(403, {
                "message": "Request forbidden by administrative rules. Please make sure your "
                           "request has a User-Agent header.",
                "documentation_url": "https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required",
                "status": "403"})
        parts = url.path.strip("/").split("/")
        if len(parts) < 4 or parts[0] != "repos" or parts[3] != "deployments":
            return self.not_found()
        repo = f"{parts[1]}/{parts[2]}"
        data = REPOS.get(repo)
        if data is None or (data["private"] and auth != f"Bearer {TOKEN}"):
            return self.not_found()
        base = f"http://{self.headers.get('Host')}"
        if len(parts) == 4:
            params = urllib.parse.parse_qs(url.query)
            env = params.get("environment", [""])[0]
            per_page = int(params.get("per_page", ["30"])[0])
            found = [d for d in data["deployments"] if not env or d[3] == env]
            found.sort(key=lambda d: d[4], reverse=True)
            return self.reply(200, [deployment_doc(base, repo, d) for d in found[:per_page]])
        if len(parts) == 6 and parts[5] == "statuses":
            for d in data["deployments"]:
                if str(d[0]) == parts[4]:
                    return self.reply(200, status_docs(base, repo, d))
        self.not_found()


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
