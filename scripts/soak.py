"""Steady ingest for the soak run (scripts/soak): posts heartbeats of a fixed
set of users to the producer at a steady rate, keeps every event id the
producer accepted (202), retries what it refused with the same ids, and at
the end compares, user by user, the heartbeats the projections count with
the heartbeats accepted. Prints one JSON report. Standard library only."""
import argparse
import json
import random
import sys
import time
import urllib.error
import urllib.request


def call(method, url, token, body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"null")
        except ValueError:
            return e.code, None
    except (urllib.error.URLError, OSError) as e:
        return None, str(e)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--producer", required=True)
    ap.add_argument("--projections", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--rate", type=float, default=200.0, help="heartbeats per second")
    ap.add_argument("--duration", type=float, default=150.0, help="seconds of ingest")
    ap.add_argument("--settle", type=float, default=180.0, help="seconds to wait for exact counts")
    ap.add_argument("--run", default=str(int(time.time())))
    a = ap.parse_args()

    users = ["soak-%s-%d" % (a.run, u) for u in range(a.users)]
    session = {u: u + "-s" for u in users}
    accepted = {u: 0 for u in users}
    pending = []  # events refused or unanswered, retried with the same ids
    refusals = {}
    rnd = random.Random(7)
    ingest = a.producer + "/v1/activity"

    def post(events):
        status, body = call("POST", ingest, a.token, {"events": events})
        ok_ids = set()
        if status == 202 and body:
            ok_ids = set(body.get("accepted", []))
        elif isinstance(body, dict) and isinstance(body.get("accepted"), list):
            ok_ids = set(body["accepted"])
        if status != 202:
            key = str(status) if status else "unreachable"
            refusals[key] = refusals.get(key, 0) + 1
        rest = []
        for e in events:
            if e["event_id"] in ok_ids:
                if e["kind"] == "heartbeat":
                    accepted[e["user_id"]] += 1
            else:
                rest.append(e)
        return rest

    starts = [{"kind": "session_started", "user_id": u, "session_id": session[u],
               "email": u + "@example.com", "event_id": u + "-start"} for u in users]
    while starts:
        starts = post(starts)
        if starts:
            time.sleep(1)

    seq = 0
    began = time.time()
    tick = 0.1
    per_tick = max(1, int(a.rate * tick))
    while time.time() - began < a.duration:
        t0 = time.time()
        batch = pending[:500]
        pending = pending[500:]
        for _ in range(per_tick):
            u = rnd.choice(users)
            seq += 1
            batch.append({"kind": "heartbeat", "user_id": u, "session_id": session[u],
                          "activity": "click", "event_id": "%s-%d" % (u, seq)})
        pending.extend(post(batch))
        time.sleep(max(0.0, tick - (time.time() - t0)))
    deadline = time.time() + 60
    while pending and time.time() < deadline:
        pending = post(pending[:500]) + pending[500:]
        if pending:
            time.sleep(1)

    # Exact counts: every accepted heartbeat counted once.
    settle_deadline = time.time() + a.settle
    seen = {}
    while True:
        seen = {}
        for u in users:
            status, body = call("GET", a.projections + "/v1/presence/users/" + u, a.token)
            seen[u] = body["sessions"][0]["heartbeats"] if status == 200 and body and body.get("sessions") else 0
        if seen == accepted or time.time() > settle_deadline:
            break
        time.sleep(2)
    lost = sum(max(0, accepted[u] - seen[u]) for u in users)
    doubled = sum(max(0, seen[u] - accepted[u]) for u in users)
    report = {
        "users": a.users,
        "accepted_heartbeats": sum(accepted.values()),
        "counted_heartbeats": sum(seen.values()),
        "lost": lost,
        "doubled": doubled,
        "never_accepted": len(pending),
        "refused_requests": refusals,
        "exact": lost == 0 and doubled == 0,
    }
    print(json.dumps(report))
    sys.exit(0 if report["exact"] else 1)


if __name__ == "__main__":
    main()
