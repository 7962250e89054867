package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// procMem is one memory reading of the proxy: its process, and with
// -proxy-children the processes it forked (Kamailio's workers) too.
type procMem struct {
	rss, hwm, pss int64         // KiB, summed over the processes
	cpu           time.Duration // CPU time used so far (utime + stime), summed
	fds           int           // open files, summed
	fdsMax        int           // open files of the process holding the most (the per-process limit binds there)
	procs         int
}

// readProcMem reads VmRSS and VmHWM (/proc/PID/status), Pss
// (/proc/PID/smaps_rollup) and the open files of pid and, with children, of
// every process whose parent is pid. Shared memory (Kamailio's shm) is in
// each process's VmRSS but divided among them in Pss, so the sum of Pss is
// the proxy's memory and the sum of VmRSS overstates it.
func readProcMem(pid int, children bool) (procMem, error) {
	pids := []int{pid}
	if children {
		pids = append(pids, childrenOf(pid)...)
	}
	var m procMem
	for i, p := range pids {
		rss, hwm, fds, err := procStatus(p)
		if err != nil {
			if i == 0 {
				return m, err
			}
			continue // a child that just ended
		}
		m.rss += rss
		m.hwm += hwm
		m.fds += fds
		m.fdsMax = max(m.fdsMax, fds)
		m.pss += pss(p)
		m.cpu += procCPU(p)
		m.procs++
	}
	return m, nil
}

// pss reads Pss (KiB) from /proc/PID/smaps_rollup; 0 when unreadable.
func pss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Pss:" {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return 0
}

// childrenOf lists the processes whose parent is pid (one scan of /proc,
// bounded by the number of processes).
func childrenOf(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == pid {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) >= 2 {
			if pp, _ := strconv.Atoi(f[1]); pp == pid {
				out = append(out, p)
			}
		}
	}
	return out
}

// treeReport is the memory part of the report with -proxy-children: sums
// over the proxy's processes, and the memory per held connection as the
// slope of the sum of Pss from N/2 to N. Called with r.mu held.
func (r *run) treeReport() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("\n%s (PID %d and the processes it forked) memory, summed over its processes from /proc/PID/status and /proc/PID/smaps_rollup:\n\n", r.cfg.proxyName, r.cfg.proxyPID)
	w("| sample | at | held phone connections | processes | sum of Pss KiB | sum of VmRSS KiB | sum of VmHWM KiB | open files (sum / largest process) |\n|---|---|---|---|---|---|---|---|\n")
	var idle, half, full *sample
	for i := range r.samples {
		sm := &r.samples[i]
		w("| %s | %.1f s | %d | %d | %d | %d | %d | %d / %d |\n", sm.label, sm.at.Seconds(), sm.conns, sm.procs, sm.pssKiB, sm.rssKiB, sm.hwmKiB, sm.fds, sm.fdsMax)
		switch sm.label {
		case "idle":
			idle = sm
		case "N/2":
			half = sm
		case "N":
			full = sm
		}
	}
	if last := r.samples[len(r.samples)-1]; full != nil && last.at > full.at {
		wall := (last.at - full.at).Seconds()
		w("\nCPU from N to the end (%.1f s, the loaded phase): %s %.2f CPUs (all its processes), this load generator %.2f CPUs (of %d).\n",
			wall, r.cfg.proxyName, (last.proxyCPU-full.proxyCPU).Seconds()/wall, (last.selfCPU-full.selfCPU).Seconds()/wall, runtime.NumCPU())
	}
	if half != nil && full != nil && full.conns > half.conns {
		w("\nKiB per held connection (sum of Pss, slope N/2 -> N): **%.1f**", float64(full.pssKiB-half.pssKiB)/float64(full.conns-half.conns))
		if idle != nil && full.conns > 0 {
			w("; (sum of Pss at N - idle) / N: %.1f", float64(full.pssKiB-idle.pssKiB)/float64(full.conns))
		}
		w(". The sum of VmRSS counts shared memory once per process; Pss divides it among them.\n")
	}
	return b.String()
}
