# Partition the samples of a Go CPU profile into categories (first match along the stack wins).
# Usage: python3 cpu_breakdown.py PROFILE.pprof   (needs `go tool pprof`). Used for docs/performance.md.
import re,subprocess,sys
cats=[("write(2) (+ deadline)", r'internal/poll\.\(\*FD\)\.Write$|SetWriteDeadline'),
("read(2) + netpoll", r'internal/poll\.\(\*FD\)\.Read$|runtime\.netpoll$'),
("GC (mark, sweep, assists)", r'runtime\.gcBgMarkWorker$|runtime\.bgsweep$|runtime\.gcAssistAlloc$|runtime\.bgscavenge$'),
("malloc (excl. assists)", r'runtime\.mallocgc$'),
("scheduler, goroutine create/exit/wake, stacks", r'runtime\.mcall$|runtime\.newproc$|runtime\.newstack$|runtime\.morestack$|runtime\.wakep$|runtime\.ready$|runtime\.goready$|runtime\.futexwakeup$|runtime\.notewakeup$|runtime\.sysmon$|runtime\.selectgo$|runtime\.chansend|runtime\.chanrecv|runtime\.gopark$|runtime\.lock2$|runtime\.unlock2$'),
("timers", r'runtime\.\(\*timer\)|runtime\.\(\*timers\)|time\.newTimer|time\.AfterFunc|time\.\(\*Timer\)'),
("sipgo parsing (rest)", r'ParserStream\)\.parseSingle|sip\.Parse'),
("sipgo serialising (rest)", r'StringWrite|\.String$|\.StringWrite$'),
("proxy package (rest)", r'sipproxy/proxy|sipproxy/forwarding|sipproxy/metrics|prometheus'),
("sipgo other (rest)", r'emiago/sipgo'),
]
out=subprocess.run(["go","tool","pprof","-traces",sys.argv[1]],capture_output=True,text=True).stdout
blocks=out.split("-----------+-------------------------------------------------------")
tot=0; acc=[0.0]*(len(cats)+1)
def secs(v):
    m=re.match(r'([0-9.]+)(ms|s|us)',v); x=float(m.group(1)); return x/1000 if m.group(2)=='ms' else (x/1e6 if m.group(2)=='us' else x)
for b in blocks:
    lines=[l for l in b.strip().split("\n") if l.strip()]
    if not lines or not re.match(r'\s*[0-9.]+(ms|s|us)\s',lines[0]): continue
    v=secs(lines[0].split()[0]); frames=[lines[0].split(None,1)[1].strip()]+[l.strip() for l in lines[1:]]
    tot+=v
    for i,(n,r) in enumerate(cats):
        if any(re.search(r,f) for f in frames): acc[i]+=v; break
    else: acc[-1]+=v
for i,(n,r) in enumerate(cats): print(f"{n:48s} {acc[i]:5.2f}s {100*acc[i]/tot:5.1f}%")
print(f"{'other':48s} {acc[-1]:5.2f}s {100*acc[-1]/tot:5.1f}%")
print(f"{'total':48s} {tot:5.2f}s")
