#!/usr/bin/env python3
"""A STAND-IN for the paid/remote places providers, for weft's tests only.

It speaks the wire formats `places.search` uses:
  * Google Places API (New) Text Search: POST /v1/places:searchText with X-Goog-Api-Key and
    X-Goog-FieldMask headers, JSON {textQuery, pageSize, pageToken?}; answers {places: [...],
    nextPageToken?} or Google's {error: {code, message, status}}.
  * OpenStreetMap Overpass: POST /api/interpreter with a form field `data` (Overpass QL);
    answers {elements: [{type, id, lat/lon or center, tags}]}.
Data is made up and deterministic: each city has len(city) * 2 businesses, ids derived from the
city, plus one chain ("p-chain") present in every city, so callers must dedupe by place id.
GET /stats returns {"calls": N, "queries": [...]}; the port is printed on the first line.
"""

import json
import zlib
import re
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_KEY = sys.argv[1] if len(sys.argv) > 1 else "test-key"
LOCK = threading.Lock()
CALLS = []


def businesses(niche, city):
    slug = re.sub(r"[^a-z0-9]+", "-", city.lower()).strip("-")
    out = []
    for i in range(len(city) * 2):
        out.append({
            "id": f"p-{slug}-{i}",
            "name": f"{city} {niche} #{i}",
            "website": f"https://{slug}-{i}.example" if i % 3 != 0 else None,
            "rating": 3.0 + (i % 5) * 0.5,
            "reviews": 10 * i,
            "lat": 39.0 + i / 100,
            "lon": -104.0 - i / 100,
        })
    out.append({"id": "p-chain", "name": f"Statewide {niche}", "website": "https://chain.example",
                "rating": 4.5, "reviews": 999, "lat": 39.7, "lon": -105.0})
    return out


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
                return self.reply(200, {"calls": len(CALLS), "queries": list(CALLS)})
        self.reply(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length).decode()
        if self.path == "/v1/places:searchText":
            return self.google(raw)
        if self.path == "/api/interpreter":
            return self.overpass(raw)
        self.reply(404, {"error": "not found"})

    def google(self, raw):
        if self.headers.get("X-Goog-Api-Key") != API_KEY:
            return self.reply(403, {"error": {"code": 403, "message": "API key not valid. Please pass a valid API key.", "status": "PERMISSION_DENIED"}})
        if not self.headers.get("X-Goog-FieldMask"):
            return self.reply(400, {"error": {"code": 400, "message": "FieldMask is a required parameter.", "status": "INVALID_ARGUMENT"}})
        body = json.loads(raw)
        query = body["textQuery"]
        with LOCK:
            CALLS.append(query)
        m = re.match(r"(.+) in ([^,]+)(?:, (.+))?$", query)
        if not m:
            return self.reply(200, {})
        niche, city = m.group(1), m.group(2)
        found = businesses(niche, city)
        size = min(int(body.get("pageSize") or 20), 20)
        start = int(body.get("pageToken") or 0)
        page = found[start:start + size]
        places = [{
            "id": b["id"],
            "displayName": {"text": b["name"], "languageCode": "en"},
            "formattedAddress": f"{i + 1} Main St, {city}, CO 80000, USA",
            **({"websiteUri": b["website"]} if b["website"] else {}),
            "nationalPhoneNumber": "(303) 555-0100",
            "rating": b["rating"],
            "userRatingCount": b["reviews"],
            "location": {"latitude": b["lat"], "longitude": b["lon"]},
        } for i, b in enumerate(page)]
        answer = {"places": places}
        if start + size < len(found):
            answer["nextPageToken"] = str(start + size)
        self.reply(200, answer)

    def overpass(self, raw):
        query = urllib.parse.parse_qs(raw).get("data", [""])[0]
        with LOCK:
            CALLS.append(query)
        city = re.search(r'area\["name"="([^"]+)"\](?:\(area\.s\))?->\.c', query)
        niche = re.search(r'~"([^"]+)",i\]', query)
        if not city or not niche or not query.startswith("[out:json]"):
            return self.reply(400, {"remark": "parse error"})
        elements = []
        for b in businesses(niche.group(1), city.group(1)):
            ident = zlib.crc32(b["id"].encode())
            kind = "way" if ident % 2 else "node"
            tags = {"name": b["name"], "craft": "hvac", "addr:street": "Main Street",
                    "addr:housenumber": "1", "addr:city": city.group(1)}
            if b["website"]:
                tags["website"] = b["website"]
            element = {"type": kind, "id": ident, "tags": tags}
            if kind == "node":
                element.update({"lat": b["lat"], "lon": b["lon"]})
            else:
                element["center"] = {"lat": b["lat"], "lon": b["lon"]}
            elements.append(element)
        self.reply(200, {"version": 0.6, "generator": "Overpass API stand-in", "elements": elements})


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
