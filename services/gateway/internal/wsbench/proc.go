package wsbench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// TreeRSS returns the resident memory, in bytes, of process pid and all its descendants (an
// nginx master and its workers, say), summing VmRSS from /proc, and how many processes it
// counted. Linux only.
func TreeRSS(pid int) (total int64, procs int, err error) {
	children, err := childrenByParent()
	if err != nil {
		return 0, 0, err
	}
	todo := []int{pid}
	for len(todo) > 0 {
		p := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		rss, err := vmRSS(p)
		if err != nil {
			if p == pid {
				return 0, 0, err
			}
			continue // a child that has just exited
		}
		total += rss
		procs++
		todo = append(todo, children[p]...)
	}
	return total, procs, nil
}

// clockTicks is the unit of utime and stime in /proc/<pid>/stat (USER_HZ, 100 on Linux).
const clockTicks = 100

// TreeCPU returns the CPU time, user and system, that process pid and its descendants have
// used so far. Linux only.
func TreeCPU(pid int) (time.Duration, error) {
	children, err := childrenByParent()
	if err != nil {
		return 0, err
	}
	var total time.Duration
	todo := []int{pid}
	for len(todo) > 0 {
		p := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		fields, err := statFields(p)
		if err != nil || len(fields) < 13 {
			if p == pid {
				return 0, fmt.Errorf("/proc/%d/stat: %v", pid, err)
			}
			continue
		}
		// Fields after the command: state(0) ppid(1) … utime(11) stime(12).
		utime, err1 := strconv.ParseInt(fields[11], 10, 64)
		stime, err2 := strconv.ParseInt(fields[12], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", p, fields[11], fields[12])
		}
		total += time.Duration(utime+stime) * time.Second / clockTicks
		todo = append(todo, children[p]...)
	}
	return total, nil
}

// statFields returns the fields of /proc/<pid>/stat after the command name (which may hold
// spaces and parentheses).
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command", pid)
	}
	return strings.Fields(string(b[i+1:])), nil
}

// childrenByParent maps each process id to its children's.
func childrenByParent() (map[int][]int, error) {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return nil, err
	}
	m := map[int][]int{}
	for _, f := range stats {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		if err != nil {
			continue
		}
		fields, err := statFields(pid)
		if err != nil || len(fields) < 2 {
			continue // gone meanwhile
		}
		if ppid, err := strconv.Atoi(fields[1]); err == nil {
			m[ppid] = append(m[ppid], pid)
		}
	}
	return m, nil
}

// vmRSS reads VmRSS of pid in bytes.
func vmRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status: VmRSS %q", pid, rest)
			}
			return kib << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}
