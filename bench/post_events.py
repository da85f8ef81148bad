#!/usr/bin/env python3
"""POST N distinct NOTIFY_PUBLIC_USER Invites to herald over keep-alive connections.

usage: post_events.py URL N [CONNECTIONS=8] [FIRST_ID=1]
Prints the seconds it took and the count of each HTTP status.
"""
import http.client
import json
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from urllib.parse import urlparse


def payload(event_id, now):
    fmt = "%Y-%m-%dT%H:%M:%S"
    session = (now + timedelta(days=3)).strftime(fmt)
    attributes = [
        ("RecipientName", "Perry Public"),
        ("RecipientEmailAddress", f"perry{event_id}@example.com"),
        ("RecipientSmsNumber", "4155552671"),
        ("RecipientTimeZone", "Pacific Standard Time"),
        ("SessionHostUserId", "24403"),
        ("SessionHostName", "Dr. Ada Example"),
        ("SessionTimeUtc", session),
        ("SessionTimeLocal", session),
    ]
    return json.dumps({
        "WebhookType": "NOTIFY_PUBLIC_USER",
        "ID": event_id,
        "Status": "Invite",
        "EventTs": now.strftime(fmt),
        "Attributes": [{"AttributeName": n, "AttributeValue": v} for n, v in attributes],
    })


def main():
    url = urlparse(sys.argv[1])
    total = int(sys.argv[2])
    connections = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    first = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    now = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    statuses = Counter()
    lock = threading.Lock()

    def worker(index):
        connection = http.client.HTTPConnection(url.hostname, url.port)
        for event_id in range(first + index, first + total, connections):
            connection.request("POST", url.path, payload(event_id, now), {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            with lock:
                statuses[response.status] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"{time.monotonic() - started:.2f} {dict(statuses)}")


if __name__ == "__main__":
    main()
