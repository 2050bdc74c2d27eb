#!/usr/bin/env python3
"""logcheck.py: checks shmguard's audit log of one fuzz sequence.

A co-process of drive.c: reads requests "LOGDIR<TAB>CALLS" from stdin, one
a line, and answers each with one line, "OK N" (N call events) or
"FAIL reason". CALLS is the file shmfuzz --calls wrote: every call it made,
"NAME ERRNO" a line ("-" on success). The checks:

- LOGDIR holds exactly one log file (the sequence is one process);
- every line is valid JSON (NUL bytes at a line's ends are the writer's
  preallocated space and are skipped, as docs/log-schema.md says; a NUL
  inside a line is an error), an object with v, event, pid, ppid, tid, ts_ns;
- the first event is "start", the last "exit" (the process exits normally);
- the call events are, one for one and in order, the calls of CALLS: same
  function, and errno null on success or the same errno name on failure.
"""
import json
import os
import sys

COMMON = ("v", "event", "pid", "ppid", "tid", "ts_ns")


def made_calls(path):
    calls = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            name, _, err = line.strip().partition(" ")
            calls.append((name, None if err == "-" else err))
    return calls


def check(logdir, calls_file):
    try:
        files = sorted(os.listdir(logdir))
    except OSError as e:
        return "FAIL cannot list %s: %s" % (logdir, e)
    if len(files) != 1:
        return "FAIL expected one log file in %s, found %d: %s" % (logdir, len(files), files)
    path = os.path.join(logdir, files[0])
    with open(path, "rb") as f:
        data = f.read()
    events = []
    for n, raw in enumerate(data.split(b"\n"), 1):
        text = raw.strip(b"\0")
        if not text.strip():
            continue
        try:
            obj = json.loads(text.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            return "FAIL %s line %d: not valid JSON (%s): %r" % (files[0], n, e, text[:300])
        if not isinstance(obj, dict):
            return "FAIL %s line %d: not an object" % (files[0], n)
        missing = [k for k in COMMON if k not in obj]
        if missing:
            return "FAIL %s line %d: no %s" % (files[0], n, ", ".join(missing))
        events.append((n, obj))
    if not events:
        return "FAIL %s: no events" % files[0]
    if events[0][1]["event"] != "start":
        return "FAIL %s: the first event is %r, not start" % (files[0], events[0][1]["event"])
    if events[-1][1]["event"] != "exit":
        return "FAIL %s: the last event is %r, not exit" % (files[0], events[-1][1]["event"])
    calls = [(n, o) for n, o in events if o["event"] == "call"]
    want = made_calls(calls_file)
    if len(calls) != len(want):
        return "FAIL %s: %d call events for %d calls made" % (files[0], len(calls), len(want))
    for i, ((n, obj), (name, err)) in enumerate(zip(calls, want)):
        if obj.get("call") != name or obj.get("errno") != err:
            return "FAIL %s line %d: call %d logged as %s errno=%s, but it was %s errno=%s" % (
                files[0], n, i, obj.get("call"), obj.get("errno"), name, err)
    return "OK %d" % len(calls)


def main():
    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line:
            continue
        logdir, _, calls_file = line.partition("\t")
        try:
            answer = check(logdir, calls_file)
        except Exception as e:  # a bug here must not look like a pass
            answer = "FAIL logcheck.py: %s: %s" % (type(e).__name__, e)
        sys.stdout.write(answer.replace("\n", " ") + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
