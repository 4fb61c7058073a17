// Memory of a relay from /proc: the sum over its process tree (websockify and socat fork a process per
// connection), as PSS (shared pages split between the processes that share them, so forked children are not
// counted N times) and RSS. For a single Node process PSS and RSS move together; deltas are what we report.
import { readFileSync, readdirSync } from 'node:fs';

/** Every live descendant of the given root pids, roots included. */
export function processTree(roots) {
  const children = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // The command name may contain spaces and parentheses: the ppid is the 2nd field after the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (!children.has(ppid)) children.set(ppid, []);
    children.get(ppid).push(Number(name));
  }
  const all = [];
  const todo = roots.filter((p) => p !== undefined);
  while (todo.length > 0) {
    const pid = todo.pop();
    all.push(pid);
    todo.push(...(children.get(pid) ?? []));
  }
  return all;
}

/** { pssKiB, rssKiB, procs } summed over the tree of the given root pids. */
export function treeMemory(roots) {
  let pssKiB = 0;
  let rssKiB = 0;
  let procs = 0;
  for (const pid of processTree(roots)) {
    let text;
    try {
      text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    } catch {
      continue;
    }
    procs++;
    pssKiB += Number(/^Pss:\s+(\d+)/m.exec(text)?.[1] ?? 0);
    rssKiB += Number(/^Rss:\s+(\d+)/m.exec(text)?.[1] ?? 0);
  }
  return { pssKiB, rssKiB, procs };
}

/** CPU time used by the tree so far, in milliseconds (user + system, reaped children included). */
export function treeCpuMs(roots) {
  let ticks = 0;
  for (const pid of processTree(roots)) {
    let stat;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue;
    }
    // Fields 14 to 17 (utime, stime, cutime, cstime), counted from the state field (3rd) after the ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  }
  return (ticks * 1000) / CLOCK_TICKS;
}

/**
 * Time the processes' threads have spent running, and runnable but waiting for a CPU, so far, in milliseconds
 * (/proc/PID/task/TID/schedstat, summed over `pids` and their threads). The wait is what a process loses to the
 * others on a busy machine; a thread that exits takes its share with it.
 */
export function schedMs(pids) {
  let run = 0;
  let wait = 0;
  eachThread(pids, (pid, tid) => {
    const [r, w] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ');
    run += Number(r);
    wait += Number(w);
  });
  return { run: run / 1e6, wait: wait / 1e6 };
}

/** fn(pid, tid) for each thread of each process; a process or thread that ended meanwhile (fn throws) is skipped. */
function eachThread(pids, fn) {
  for (const pid of pids) {
    let tids;
    try {
      tids = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue; // exited meanwhile
    }
    for (const tid of tids) {
      try {
        fn(pid, tid);
      } catch {
        // exited meanwhile
      }
    }
  }
}

/** USER_HZ: 100 on every Linux this runs on (sysconf(_SC_CLK_TCK) is not reachable from Node). */
const CLOCK_TICKS = 100;

/**
 * The CPUs the threads of each process may run on (`Cpus_allowed_list` of /proc/PID/task/TID/status), the distinct
 * lists joined by ' / ' (one list when every thread has the same); '' when none could be read. Linux only.
 */
export function allowedCpus(pids) {
  const lists = new Set();
  eachThread(pids, (pid, tid) => {
    const list = /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'))?.[1];
    if (list) lists.add(list);
  });
  return [...lists].join(' / ');
}
