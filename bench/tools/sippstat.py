#!/usr/bin/env python3
"""Summarise one sipp UAC run for bench/run.sh.

usage: sippstat.py STAT_CSV [RTT_CSV]

STAT_CSV is sipp's -trace_stat file (one row per -fd period, cumulative
columns end in "(C)"); RTT_CSV is its -trace_rtt file (one row per call:
Date_ms;response_time_ms;rtd_no, response time in fractional milliseconds).

Prints one line, space separated, "-" where unknown:
  successful failed achieved_cps p50_ms p99_ms mean_ms max_open_calls rtt_samples
"""
import sys


def stat(path):
    try:
        rows = [l.rstrip("\n") for l in open(path) if l.strip()]
    except OSError:
        return None, None
    if len(rows) < 2:
        return None, None
    head = [h.strip() for h in rows[0].split(";")]
    data = [dict(zip(head, (v.strip() for v in r.split(";")))) for r in rows[1:]]
    return head, data


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def pct(sorted_vals, p):
    # nearest rank
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(-(-p * len(sorted_vals) // 100)) - 1))
    return sorted_vals[k]


def main():
    out = {k: "-" for k in ("succ", "fail", "rate", "p50", "p99", "mean", "maxopen", "n")}
    head, data = stat(sys.argv[1])
    if data:
        last = data[-1]
        for key, col in (("succ", "SuccessfulCall(C)"), ("fail", "FailedCall(C)")):
            v = num(last.get(col))
            if v is not None:
                out[key] = str(int(v))
        v = num(last.get("CallRate(C)"))
        if v is not None:
            out["rate"] = f"{v:.0f}"
        cur = [num(r.get("CurrentCall")) for r in data]
        cur = [c for c in cur if c is not None]
        if cur:
            out["maxopen"] = str(int(max(cur)))
    if len(sys.argv) > 2:
        vals = []
        try:
            for line in open(sys.argv[2]):
                parts = line.strip().split(";")
                if len(parts) >= 2:
                    v = num(parts[1])
                    if v is not None:
                        vals.append(v)
        except OSError:
            pass
        if vals:
            vals.sort()
            out["p50"] = f"{pct(vals, 50):.2f}"
            out["p99"] = f"{pct(vals, 99):.2f}"
            out["mean"] = f"{sum(vals) / len(vals):.2f}"
            out["n"] = str(len(vals))
    print(" ".join(out[k] for k in ("succ", "fail", "rate", "p50", "p99", "mean", "maxopen", "n")))


if __name__ == "__main__":
    main()
