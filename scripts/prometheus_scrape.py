#!/usr/bin/env python3
"""Scrapes a `--prometheus` endpoint once and prints what Prometheus' own parser (pip install prometheus_client)
reads there, as one JSON object: {"status": 200, "families": {name: {"type": ..., "samples": [[name, labels,
value], ...]}}}. `--probe` first holds a connection open that sends nothing, then sends a request for another path and a line that
is not HTTP, and prints their status lines (a server must answer both, and the scrape, despite the silent one). Used by the tests; handy to check a run."""
import json
import socket
import sys
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def raw_status(host, port, request):
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(request)
        return s.recv(4096).split(b"\r\n", 1)[0].decode()


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: prometheus_scrape.py http://HOST:PORT/metrics [--probe]")
    url = sys.argv[1]
    out, idle = {}, None
    if "--probe" in sys.argv[2:]:
        host, port = url.split("//")[1].split("/")[0].rsplit(":", 1)
        idle = socket.create_connection((host, int(port)), timeout=10)
        out["other_path"] = raw_status(host, int(port), b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
        out["not_http"] = raw_status(host, int(port), b"hello there\r\n\r\n")
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            out["status"] = response.status
            out["content_type"] = response.headers.get("Content-Type")
            text = response.read().decode()
    except urllib.error.URLError as error:
        sys.exit(f"{url}: {error}")
    finally:
        if idle:
            idle.close()
    out["families"] = {family.name: {"type": family.type,
                                     "samples": [[s.name, s.labels, s.value] for s in family.samples]}
                       for family in text_string_to_metric_families(text)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
