#!/usr/bin/python3
"""The benchmark's numbers and report, from what mount-scripts/bench recorded.

  report.py fio-mibs FILE          print a fio JSON result in MiB/s (as the table shows it)
  report.py sample PID FILE        every second until PID exits: its peak fd count and
                                   peak VmRSS (KiB), as "FDS RSS" in FILE
  report.py finish RAW --work DIR --repo DIR [--doc FILE]
                                   record the machine (RAW/machine.json), print the tables,
                                   and write the generated section of FILE

What the bench records in its raw folder RAW (nothing here measures anything):
  settings        key=value lines: sizes, targets, options, the load at the start
  facts           "KEY VALUE..." lines appended during the run (timestamps, counts,
                  why a metadata run failed)
  TARGET.NAME.ROUND.json  fio's JSON output;  TARGET.meta[_b].ROUND.txt  bench.d/meta.c's output
                  (create, stat, unlink, with per-call latency percentiles);
                  TARGET.readdir.ROUND.txt  meta.c's readdir phase (first listing, median of
                  five more). Rounds are 1..`rounds` of settings; a run recorded before there
                  were rounds (no `rounds` setting) has one, without the .ROUND part.
  faultfs_rules.WORKLOAD{round}{armed}.json   the A B A B runs with rules armed or not
  monitor-INTERVAL.samples.jsonl / .events.jsonl   the monitor's output at each interval
  million.status.{start,after_walk,final}   the daemon's /proc/PID/status; million.samples
  block.{plain,faultfs}.WORKLOAD.ROUND.json   --block: fio on the plain loop / faultfs --fs
  block.faultfs_strace.randwrite.json, block.strace.txt   the extra run under `strace -c -f`
Everything is turned into numbers and markdown here (pure functions: tests/test_report.py).
"""
import json, math, os, re, subprocess, sys, time

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
BLOCK_BEGIN, BLOCK_END = "<!-- bench-block:begin -->", "<!-- bench-block:end -->"
TARGETS = ("plain", "passthrough_ll", "bindfs", "mergerfs", "faultfs", "faultfs-crashsim")
# the FUSE passthroughs users pick, which faultfs is measured against
PEERS = ("passthrough_ll", "bindfs", "mergerfs")
FIO_WORKLOADS = ("seqwrite", "seqread_cold", "seqread_warm", "randwrite", "randread_warm", "syncwrite")
META_PHASES = ("create", "stat", "unlink")
# workload -> the phase of meta.c's readdir output
READDIR = {"readdir_cold": "readdir_first", "readdir_warm": "readdir_again"}
# (name, fio's clat_ns percentile key, meta.c's field)
PERCENTILES = (("p50", "50.000000", "p50_us"), ("p99", "99.000000", "p99_us"), ("p99.9", "99.900000", "p999_us"))
# latency rows: 4k O_SYNC writes (fio) on each target's normal mount and on a
# mount without the writeback cache (syncwrite_nowb), and stat (meta.c)
LATENCY_WORKLOADS = ("syncwrite", "syncwrite_nowb", "stat")
# the targets the bench mounts a second time without a writeback cache for syncwrite_nowb
NOWB_TARGETS = ("passthrough_ll", "bindfs", "mergerfs", "faultfs")
# the percentiles whose ratio decides the latency status (p99.9 is a few samples)
LATENCY_GOAL_PERCENTILES = ("p50", "p99")
RULE_WORKLOADS = ("seqwrite", "randwrite")
MONITOR_INTERVALS = ("100ms", "10ms")
# block mode: workload -> minimum of faultfs --fs / plain loop (medians)
BLOCK_GOALS = {"seqwrite": 0.8, "randwrite": 0.5, "randread": 0.5}
# Issue 15's targets: faultfs >= 1.0x the best peer on every workload (the
# O_SYNC write's target is its latency), warm reads also >= 0.9x plain.
# workload: [(reference, minimum of faultfs / reference)]; "best peer" is the
# fastest of PEERS on that workload in this run (medians).
PEER_GOAL = ("best peer", 1.0)
GOALS = {w: [PEER_GOAL] for w in ("seqwrite", "seqread_cold", "seqread_warm", "randwrite", "randread_warm", "create",
                                  "stat", "unlink", "create_b", "stat_b", "unlink_b", "readdir_cold", "readdir_warm")}
GOALS["seqread_warm"] = GOALS["randread_warm"] = [PEER_GOAL, ("plain", 0.9)]
# Issue 12: faultfs -o crashsim / faultfs on the writes (same rounds).
CRASHSIM_WORKLOADS = ("seqwrite", "randwrite", "syncwrite")
CRASHSIM_GOALS = {"seqwrite": 0.7}


# ---------------------------------------------------------------- numbers (pure)

def number(x):
    """A value as the tables print it: no trailing ".0" (1302.8, 792, 8000)."""
    return str(int(x)) if x == int(x) else str(x)


def round1(x):
    """To one decimal, halves away from zero (as jq's round did)."""
    return math.floor(x * 10 + 0.5) / 10


def fio_mibs(result):
    """MiB/s (read + write) of a fio JSON result, to one decimal."""
    job = result["jobs"][0]
    return round1((job["read"]["bw_bytes"] + job["write"]["bw_bytes"]) / 1048576)


def meta_field(text, phase, field):
    """A number of one phase's line of bench.d/meta.c's output (None if absent)."""
    m = re.search(r"^phase=%s (?:.* )?%s=([0-9.]+)(?: |$)" % (re.escape(phase), re.escape(field)), text or "", re.M)
    return None if m is None else float(m.group(1))


def meta_ops(text, phase):
    """ops/s of one phase of bench.d/meta.c's output, as an integer (None if absent)."""
    v = meta_field(text, phase, "ops_per_s")
    return None if v is None else int("%.0f" % v)


def meta_latency(text, phase):
    """{"p50": µs, "p99": µs, "p99.9": µs} of one phase of meta.c's output (None without them)."""
    out = {name: meta_field(text, phase, field) for name, _, field in PERCENTILES}
    return None if None in out.values() else out


def fio_latency(result):
    """{"p50": µs, ...} of a fio JSON result's completion latencies (clat), of its
    writes if it wrote, else of its reads (None without percentiles)."""
    job = result["jobs"][0]
    side = job["write"] if job["write"].get("bw_bytes", 0) > 0 else job["read"]
    pct = side.get("clat_ns", {}).get("percentile")
    if not pct:
        return None
    try:
        return {name: pct[key] / 1000.0 for name, key, _ in PERCENTILES}
    except KeyError:
        return None


def ratio(a, b):
    """'1.18', or '-' when a number is missing or b is not positive."""
    if a is None or b is None or b <= 0:
        return "-"
    return "%.2f" % (a / b)


def median(values):
    """The median of the numbers (None if there are none)."""
    v = sorted(values)
    if not v:
        return None
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def spread(values):
    """'min-max' of the numbers, as the tables print them ('' if none)."""
    return "%s-%s" % (number(min(values)), number(max(values))) if values else ""


def spread_pct(values):
    """Half the range as a share of the median, '±7%' ('' for fewer than two numbers)."""
    m = median(values)
    if len(values) < 2 or not m:
        return ""
    return "±%.0f%%" % (50.0 * (max(values) - min(values)) / m)


def micros(x):
    """A latency in µs as the tables print it: 3 significant digits, at most one decimal."""
    if x is None:
        return "?"
    return "%.0f" % x if x >= 100 else "%.1f" % x if x >= 1 else "%.2f" % x


def parse_strace_counts(text):
    """`strace -c` output: [(syscall, calls, errors, seconds)], most calls first."""
    rows = []
    for line in (text or "").splitlines():
        m = re.match(r"^\s*[\d.]+\s+([\d.]+)\s+(\d+)\s+(\d+)\s+(?:(\d+)\s+)?([a-z_0-9]+)$", line)
        if m and m.group(5) != "total":
            rows.append((m.group(5), int(m.group(3)), int(m.group(4) or 0), float(m.group(1))))
    return sorted(rows, key=lambda r: -r[1])


def mib(kib):
    return "?" if kib is None else "%.1f" % (kib / 1024)


def rate(n, seconds):
    """Files per second from a seconds text ('139.0'); '-' without one."""
    if not seconds:
        return "-"
    return "%.0f" % (n / float(seconds)) if float(seconds) > 0 else "-"


def under(value, limit):
    if value is None or value == "?":
        return "n/a"
    return "met" if float(value) < limit else "MISSED"


def status_kib(text, key):
    """A 'Key:  N kB' line of /proc/PID/status, in KiB (None if absent)."""
    m = re.search(r"^%s:\s+(\d+)" % key, text or "", re.M)
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------- reading a run

def read(path, default=None):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def parse_settings(text):
    out = {}
    for line in (text or "").splitlines():
        key, eq, value = line.partition("=")
        if eq:
            out[key] = value
    return out


def parse_facts(text):
    """'KEY VALUE...' lines: {key: value}; meta_error lines: {"meta_error": {run: why}}
    (the reasons of a run that failed in several rounds joined with '; ')."""
    out = {"meta_error": {}}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if key == "meta_error":
            run, _, why = value.partition(" ")
            errors = out["meta_error"]
            errors[run] = errors[run] + "; " + why if run in errors else why
        elif key:
            out[key] = value
    return out


class Run:
    """One bench run's recorded results, and what they mean."""

    def __init__(self, raw):
        self.raw = raw
        self.s = parse_settings(read(os.path.join(raw, "settings")))
        self.facts = parse_facts(read(os.path.join(raw, "facts")))
        self.machine = json.loads(read(os.path.join(raw, "machine.json"), "{}"))
        self.targets = self.s.get("targets", ",".join(TARGETS)).split(",")
        self.standard = self.s.get("standard") == "1"
        self.million = self.s.get("million") == "1"
        self.batch = self.s.get("meta_batch", "")
        self.rules = int(self.s.get("rules", "1000"))
        # 0: a run recorded before rounds (one round, no .ROUND in the names)
        self.rounds = int(self.s.get("rounds") or 0)

    def setting(self, key):
        return self.s.get(key, "")

    def workloads(self):
        """The rows of the standard table, in order (what this run measured)."""
        fio = [w for w in FIO_WORKLOADS if w != "syncwrite" or self.setting("sync_mib")]
        readdir = list(READDIR) if self.setting("readdir_files") else []
        return fio + list(META_PHASES) + ([p + "_b" for p in META_PHASES] if self.batch else []) + readdir

    def label(self, w):
        seq, rand = self.setting("seq_mib"), self.setting("rand_mib")
        labels = {"seqwrite": "seq write %s MiB bs=1M +fsync" % seq, "seqread_cold": "seq read %s MiB cold" % seq,
                  "seqread_warm": "seq read %s MiB warm" % seq, "randwrite": "rand write 4k %s MiB +fsync" % rand,
                  "randread_warm": "rand read 4k %s MiB warm" % rand,
                  "syncwrite": "rand write 4k O_SYNC (≤ %s MiB, ≤ %s s)" % (self.setting("sync_mib"),
                                                                         self.setting("sync_seconds") or "?"),
                  "create": "create+write 4 KiB+close", "stat": "stat", "unlink": "unlink",
                  "readdir_cold": "readdir %s entries, cold" % self.setting("readdir_files"),
                  "readdir_warm": "readdir %s entries, warm" % self.setting("readdir_files")}
        if w.endswith("_b"):
            return "%s, %s at a time" % (labels[w[:-2]], self.batch)
        return labels[w]

    @staticmethod
    def unit(w):
        return "MiB/s" if w in FIO_WORKLOADS else "entries/s" if w in READDIR else "ops/s"

    def round_names(self):
        """The suffixes of this run's rounds in the raw file names."""
        return [".%d" % n for n in range(1, self.rounds + 1)] if self.rounds else [""]

    def fio_json(self, name):
        try:
            return json.loads(read(os.path.join(self.raw, name + ".json")))
        except (TypeError, ValueError):
            return None

    def fio(self, name):
        try:
            return fio_mibs(self.fio_json(name))
        except (TypeError, ValueError, KeyError, IndexError):
            return None

    def meta_text(self, target, w, rnd):
        """meta.c's output holding workload w of target in one round ('' if none)."""
        if w in READDIR:
            return read(os.path.join(self.raw, "%s.readdir%s.txt" % (target, rnd)), "")
        return read(os.path.join(self.raw, "%s.meta%s%s.txt" % (target, "_b" if w.endswith("_b") else "", rnd)), "")

    def round_value(self, target, w, rnd):
        if w in FIO_WORKLOADS:
            return self.fio("%s.%s%s" % (target, w, rnd))
        phase = READDIR.get(w, w[:-2] if w.endswith("_b") else w)
        return meta_ops(self.meta_text(target, w, rnd), phase)

    def values(self, target, w):
        """The number of every round that completed (failed rounds left out)."""
        vals = [self.round_value(target, w, rnd) for rnd in self.round_names()]
        return [v for v in vals if v is not None]

    def value(self, target, w):
        """The median over the rounds of a workload on a target; None when every round failed."""
        m = median(self.values(target, w))
        if m is None:
            return None
        return round1(m) if w in FIO_WORKLOADS else int("%.0f" % m)

    def ran(self, target):
        return self.standard and target in self.targets

    def skipped(self, target):
        """Why the bench left a target out (None if it did not)."""
        return self.facts.get("skipped." + target)

    def cell(self, target, w, terminal=False):
        """Median (min-max), or median ±spread on the terminal; 'k of n rounds' when some failed."""
        if not self.ran(target):
            return "skipped" if self.skipped(target) else "-"
        vals = self.values(target, w)
        if not vals:
            return "FAILED"
        out = number(self.value(target, w))
        if len(vals) > 1:
            out += spread_pct(vals) if terminal else " (%s)" % spread(vals)
        n = len(self.round_names())
        if len(vals) < n:
            out += " %d/%d" % (len(vals), n) if terminal else ", %d of %d rounds" % (len(vals), n)
        return out

    def num(self, target, w):
        return self.value(target, w) if self.ran(target) else None

    def best_peer(self, w):
        """(peer, median) of the fastest peer on w, or (None, None) when none has a number."""
        nums = [(self.num(p, w), p) for p in PEERS if self.num(p, w) is not None]
        if not nums:
            return None, None
        v, p = max(nums)
        return p, v

    def reference(self, ref, w):
        return self.best_peer(w)[1] if ref == "best peer" else self.num(ref, w)

    def goal_text(self, w, ge="≥"):
        return "; ".join("%s %sx %s" % (ge, minimum, ref) for ref, minimum in GOALS.get(w, []))

    def goal_status(self, w):
        if w not in GOALS:
            return ""
        met = True
        for ref, minimum in GOALS[w]:
            r = ratio(self.num("faultfs", w), self.reference(ref, w))
            if r == "-":
                return "n/a"
            met = met and float(r) >= minimum
        return "met" if met else "MISSED"

    # -------------------------------------------------- latency
    def has_nowb(self):
        """Whether this run measured the O_SYNC writes without writeback caches too."""
        return any(os.path.exists(os.path.join(self.raw, "%s.syncwrite_nowb%s.json" % (t, rnd)))
                   for t in NOWB_TARGETS for rnd in self.round_names())

    def latency_workloads(self):
        """The rows of the latency table (what this run measured)."""
        return [w for w in LATENCY_WORKLOADS
                if not (w.startswith("syncwrite") and not self.setting("sync_mib"))
                and not (w == "syncwrite_nowb" and not self.has_nowb())]

    def latency_judged(self, w):
        """With the no-writeback-cache row present (issue 15 asks for the O_SYNC
        latency with -o nowriteback), the normal-mount O_SYNC row is shown, not judged."""
        return not (w == "syncwrite" and self.has_nowb())

    def round_latency(self, target, w, rnd):
        if w in FIO_WORKLOADS or w == "syncwrite_nowb":
            try:
                return fio_latency(self.fio_json("%s.%s%s" % (target, w, rnd)))
            except (TypeError, KeyError, IndexError):
                return None
        return meta_latency(self.meta_text(target, w, rnd), w)

    def latency(self, target, w):
        """{"p50": µs, ...}: the median over the rounds of each percentile (None if no round has them)."""
        if not self.ran(target) or (w == "syncwrite_nowb" and target not in NOWB_TARGETS):
            return None
        per_round = [x for x in (self.round_latency(target, w, rnd) for rnd in self.round_names()) if x]
        if not per_round:
            return None
        return {name: median([x[name] for x in per_round]) for name, _, _ in PERCENTILES}

    def best_peer_latency(self, w):
        """{"p50": µs, ...}: the lowest of the peers at each percentile (None if no peer has them)."""
        lats = [x for x in (self.latency(p, w) for p in PEERS) if x]
        if not lats:
            return None
        return {name: min(x[name] for x in lats) for name, _, _ in PERCENTILES}

    def latency_ratios(self, w):
        """{"p50": best peer / faultfs, ...} (>= 1.0: faultfs as fast or faster); None if either is missing."""
        ff, peer = self.latency("faultfs", w), self.best_peer_latency(w)
        if not ff or not peer:
            return None
        return {name: ratio(peer[name], ff[name]) for name, _, _ in PERCENTILES}

    def latency_status(self, w):
        if not self.latency_judged(w):
            return "shown"
        rs = self.latency_ratios(w)
        if rs is None or "-" in [rs[p] for p in LATENCY_GOAL_PERCENTILES]:
            return "n/a"
        return "met" if all(float(rs[p]) >= 1.0 for p in LATENCY_GOAL_PERCENTILES) else "MISSED"

    def latency_label(self, w):
        return {"syncwrite": "4k O_SYNC rand write (fio clat)",
                "syncwrite_nowb": "4k O_SYNC rand write, no writeback cache (fio clat)",
                "stat": "stat (meta.c, one call)"}[w]

    # -------------------------------------------------- crashsim on vs off
    def crashsim_ratio(self, w):
        return ratio(self.num("faultfs-crashsim", w), self.num("faultfs", w))

    def crashsim_status(self, w):
        if w not in CRASHSIM_GOALS:
            return ""
        r = self.crashsim_ratio(w)
        return "n/a" if r == "-" else "met" if float(r) >= CRASHSIM_GOALS[w] else "MISSED"

    # -------------------------------------------------- hot path with rules armed
    def rules_mean(self, w, armed):
        """Mean MiB/s of the two rounds with no rules (armed 0), the never-matching rules (1)
        or the rule matching 1% of writes (2); None when one failed."""
        vals = [self.fio("faultfs_rules.%s%d%d" % (w, rnd, armed)) for rnd in (1, 2)]
        if None in vals:
            return None
        return float("%.1f" % (sum(vals) / 2))

    # -------------------------------------------------- block mode
    def block_values(self, target, w):
        """MiB/s of each round that completed (failed rounds left out)."""
        rounds = int(self.s.get("block_rounds") or 0)
        vals = [self.fio("block.%s.%s.%d" % (target, w, n)) for n in range(1, rounds + 1)]
        return [v for v in vals if v is not None]

    def block_ratio(self, w):
        return ratio(median(self.block_values("faultfs", w)), median(self.block_values("plain", w)))

    def block_status(self, w):
        r = self.block_ratio(w)
        return "n/a" if r == "-" else "met" if float(r) >= BLOCK_GOALS[w] else "MISSED"

    def block_label(self, w):
        return {"seqwrite": "seq write %s MiB bs=1M +fsync at end" % self.setting("block_seq_mib"),
                "randwrite": "rand write 4k %s MiB, fsync every 32" % self.setting("block_rand_mib"),
                "randread": "rand read 4k %s MiB, cache dropped" % self.setting("block_rand_mib")}[w]

    def block_writes(self):
        """4 KiB writes in one random-write run."""
        return int(self.setting("block_rand_mib") or 0) * 256

    # -------------------------------------------------- monitor
    def monitor(self, interval):
        f = self.facts
        ticks, hz = f.get("monitor.%s.ticks" % interval), f.get("hz")
        samples = read(os.path.join(self.raw, "monitor-%s.samples.jsonl" % interval))
        events = read(os.path.join(self.raw, "monitor-%s.events.jsonl" % interval), "")
        late = re.search(r"(\d+) of \d+ samples were more than one interval late", events)
        rss = f.get("monitor.%s.rss_kib" % interval)
        return {"cpu": "%.1f" % (100 * int(ticks) / int(hz) / 19.5) if ticks and hz else None,
                "rss": int(rss) if rss else None,
                "samples": str(samples.count("\n")) if samples is not None else "?",
                "late": late.group(1) if late else "0"}

    # -------------------------------------------------- million
    def million_numbers(self):
        f = self.facts

        def seconds(phase):
            a, b = f.get("million.%s.start" % phase), f.get("million.%s.end" % phase)
            return None if not (a and b) else "%.1f" % (float(b) - float(a))

        def status(when):
            return read(os.path.join(self.raw, "million.status." + when), "")

        def fds(when):
            v = f.get("million.fds.%s" % when)
            return int(v) if v else None

        sampled = (read(os.path.join(self.raw, "million.samples"), "") or "").split()
        fds_sampled, rss_sampled = (int(sampled[0]), int(sampled[1])) if len(sampled) == 2 else (None, None)
        m = {p: seconds(p) for p in ("create", "find", "du", "rm")}
        m.update(rss_start=status_kib(status("start"), "VmRSS"), rss_after_walk=status_kib(status("after_walk"), "VmRSS"),
                 rss_final=status_kib(status("final"), "VmRSS"), fds_start=fds("start"),
                 fds_after_walk=fds("after_walk"), fds_final=fds("final"),
                 found=(read(os.path.join(self.raw, "million.find.txt"), "?") or "?").strip() or "?",
                 left=f.get("million.left", "?"), create_failed=f.get("million.create_failed"),
                 rm_failed=f.get("million.rm_failed"))
        # VmHWM is updated lazily by the kernel: the peak is the largest of all we saw.
        rss = [status_kib(status("final"), "VmHWM"), rss_sampled, m["rss_after_walk"], m["rss_final"]]
        m["rss_peak"] = max((v for v in rss if v is not None), default=None)
        fd_counts = [fds_sampled, m["fds_after_walk"], m["fds_final"]]
        m["fds_peak"] = max((v for v in fd_counts if v is not None), default=None)
        return m


# ---------------------------------------------------------------- markdown (pure, from a Run)

def blank(v):
    return "" if v is None else number(v) if isinstance(v, (int, float)) else str(v)


def standard_row(r, w, terminal=False):
    """The cells of one workload: label, unit, every target, the best peer, ratios, target, status."""
    peer, peer_value = r.best_peer(w)
    return ([r.label(w), r.unit(w)] + [r.cell(t, w, terminal) for t in TARGETS] +
            [peer or "-", ratio(r.num("faultfs", w), peer_value), ratio(r.num("faultfs", w), r.num("plain", w)),
             r.goal_text(w, ">=" if terminal else "≥"), r.goal_status(w)])


def standard_markdown(r):
    out = ["| workload | unit | %s | best peer | faultfs/best peer | faultfs/plain | target | status |" % " | ".join(TARGETS),
           "| --- | --- |%s --- | ---: | ---: | --- | --- |" % (" ---: |" * len(TARGETS))]
    for w in r.workloads():
        out.append("| %s |" % " | ".join(standard_row(r, w)))
    return out


def latency_cell(lat):
    return "-" if not lat else " / ".join(micros(lat[name]) for name, _, _ in PERCENTILES)


def latency_markdown(r):
    """p50 / p99 / p99.9 in µs of every target (medians of the rounds), against the best peer."""
    out = ["| latency, µs: p50 / p99 / p99.9 | %s | best peer | best peer / faultfs | target | status |"
           % " | ".join(TARGETS), "| --- |%s --- | ---: | --- | --- |" % (" ---: |" * len(TARGETS))]
    for w in r.latency_workloads():
        cells = [("skipped" if r.skipped(t) else "-") if not r.ran(t) else
                 "-" if w == "syncwrite_nowb" and t not in NOWB_TARGETS else
                 (latency_cell(r.latency(t, w)) if r.latency(t, w) else "FAILED") for t in TARGETS]
        rs = r.latency_ratios(w)
        goal = "≥ 1.0 at %s" % " and ".join(LATENCY_GOAL_PERCENTILES) if r.latency_judged(w) else "not judged"
        out.append("| %s | %s | %s | %s | %s | %s |" % (
            r.latency_label(w), " | ".join(cells), latency_cell(r.best_peer_latency(w)),
            "-" if rs is None else " / ".join(rs[name] for name, _, _ in PERCENTILES),
            goal, r.latency_status(w)))
    return out


def crashsim_markdown(r):
    """faultfs -o crashsim against faultfs, both mounted afresh in every round."""
    why = r.skipped("faultfs-crashsim")
    if why:
        return ["_faultfs-crashsim was skipped: %s._" % why.rstrip(".")]
    out = ["| workload (medians of the rounds) | unit | faultfs | faultfs -o crashsim | crashsim/faultfs | target | status |",
           "| --- | --- | ---: | ---: | ---: | --- | --- |"]
    for w in CRASHSIM_WORKLOADS:
        if w == "syncwrite" and not r.setting("sync_mib"):
            continue
        goal = CRASHSIM_GOALS.get(w)
        out.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            r.label(w), r.unit(w), r.cell("faultfs", w), r.cell("faultfs-crashsim", w), r.crashsim_ratio(w),
            "≥ %sx" % goal if goal else "", r.crashsim_status(w)))
    return out


def meta_failures(r):
    out = []
    for run, why in r.facts["meta_error"].items():
        if run.endswith(".readdir"):
            out.append("- %s, readdir of %s entries: %s" % (run[:-len(".readdir")], r.setting("readdir_files"), why))
        elif run.endswith("_b"):
            out.append("- %s, %s files at a time: %s" % (run[:-2], r.batch, why))
        else:
            out.append("- %s, all %s files live: %s" % (run, r.setting("meta_files"), why))
    return out


def rules_markdown(r):
    """No rules, the never-matching rules and (in runs that had it) the rule matching 1% of writes."""
    prob = r.setting("prob_rule")
    if not prob:
        out = ["| workload (same mount, A B A B, mean of 2) | unit | faultfs | faultfs, %d rules armed | ratio | target |"
               % r.rules, "| --- | --- | ---: | ---: | ---: | --- |"]
    else:
        out = ["| workload (same mount, A B C A B C, mean of 2) | unit | faultfs | faultfs, %d rules armed | ratio "
               "| faultfs, `%s` | ratio | target |" % (r.rules, prob), "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for w in RULE_WORKLOADS:
        off, on = r.rules_mean(w, 0), r.rules_mean(w, 1)
        cells = [r.label(w), r.unit(w), "FAILED" if off is None else "%.1f" % off,
                 "FAILED" if on is None else "%.1f" % on, ratio(on, off)]
        if prob:
            matching = r.rules_mean(w, 2)
            cells += ["FAILED" if matching is None else "%.1f" % matching, ratio(matching, off)]
        out.append("| %s | ≥ 0.95 |" % " | ".join(cells))
    return out


def monitor_markdown(r):
    out = ["| interval | CPU (share of one core) | peak RSS (MiB) | samples in 20 s | later than one interval | target |",
           "| --- | ---: | ---: | ---: | ---: | --- |"]
    for i in MONITOR_INTERVALS:
        m = r.monitor(i)
        out.append("| %s | %s%% | %s | %s | %s | %s |" % (
            i, m["cpu"] or "?", mib(m["rss"]), m["samples"], m["late"],
            "< 2%, < 32 MiB" if i == "100ms" else "keeps up"))
    return out


MILLION_HEAD = "### One million files (faultfs only)"


def previous_million(doc_text):
    """The million-file subsection of doc_text's generated section, from its
    heading to the section's end marker (None if there is none): a run without
    --million keeps it instead of dropping the last such numbers."""
    if not doc_text or BEGIN not in doc_text or END not in doc_text:
        return None
    section = doc_text[doc_text.index(BEGIN):doc_text.index(END)]
    if MILLION_HEAD not in section:
        return None
    return section[section.index(MILLION_HEAD):].rstrip("\n")


def million_markdown(r):
    m, n, dirs = r.million_numbers(), int(r.setting("mil_files") or 0), r.setting("mil_dirs")
    mc = r.machine
    out = ["_Run of %s, faultfs %s._" % (mc.get("date", "?"), mc.get("commit", "unknown")), "",
           "| phase | seconds | files/s |", "| --- | ---: | ---: |",
           "| create %d empty files in %s dirs | %s | %s |" % (n, dirs, blank(m["create"]), rate(n, m["create"])),
           "| `find MNT -type f \\| wc -l` (found %s) | %s | %s |" % (m["found"], blank(m["find"]), rate(n, m["find"])),
           "| `du -s MNT` | %s | %s |" % (blank(m["du"]), rate(n, m["du"])),
           "| `rm -rf MNT/*` (left: %s) | %s | %s |" % (m["left"], blank(m["rm"]), rate(n, m["rm"])),
           "",
           "| faultfs daemon | at start | after the walk | peak | final (after rm) | target (final) |",
           "| --- | ---: | ---: | ---: | ---: | --- |",
           "| RSS (MiB; peak = max of VmHWM and the samples) | %s | %s | %s | %s | < 64 MiB: %s |" % (
               mib(m["rss_start"]), mib(m["rss_after_walk"]), mib(m["rss_peak"]), mib(m["rss_final"]),
               under(mib(m["rss_final"]), 64)),
           "| open fds (peak sampled every second) | %s | %s | %s | %s | < 1,000: %s |" % (
               blank(m["fds_start"]), blank(m["fds_after_walk"]), blank(m["fds_peak"]), blank(m["fds_final"]),
               under(m["fds_final"], 1000))]
    if m["create_failed"] or m["rm_failed"]:
        out += ["", "**A phase failed** (create: %s, rm: %s); see the logs of the run." % (
            "1" if m["create_failed"] else "ok", "1" if m["rm_failed"] else "ok")]
    return out


def machine_markdown(r):
    mc, s = r.machine, r.s
    ll_opts = s.get("ll_opts", "")
    mode = "--quick (sizes /16)" if s.get("quick") == "1" else "standard"
    if r.million:
        mode += ", with the million-file run"
    rows = [("date", mc.get("date", "?")), ("kernel (uname -r)", mc.get("kernel", "?")),
            ("CPUs (nproc)", "%s (%s)" % (mc.get("nproc", "?"), mc.get("cpu_model", ""))),
            ("memory", mc.get("memory", "?")),
            ("load average (1 min) at start / end", "%s / %s" % (s.get("load_start", "?"), mc.get("load_end", "?"))),
            ("backing fs (findmnt)", mc.get("backing_fs", "?")), ("fio", s.get("fio_version", "?")),
            ("libfuse", "%s (headers), %s (libfuse3-3 package)" % (mc.get("libfuse_headers", "?"),
                                                                   mc.get("libfuse_package", "?"))),
            ("faultfs commit", mc.get("commit", "unknown")),
            ("faultfs options", s.get("faultfs_opts") or "defaults (writeback cache on, 64 threads max)"),
            ("passthrough_ll", "`-f -o writeback -o source=DIR%s`, libfuse's default loop (multi-threaded, 10 threads "
                               "max), %s, RLIMIT_NOFILE %s" % (" -o " + ll_opts if ll_opts else "",
                                                              ll_opts or "cache=auto (1 s timeouts)",
                                                              s.get("ll_nofile", "?")))]
    if "bindfs_opts" in s:
        rows.append(("bindfs", "%s: `bindfs -f %s SRC MNT` (libfuse 2.9: no writeback cache)"
                     % (s.get("bindfs_version") or "?", s["bindfs_opts"])))
    if "mergerfs_opts" in s:
        rows.append(("mergerfs", "%s: `mergerfs -f -o %s SRC MNT`" % (s.get("mergerfs_version") or "?",
                                                                      s["mergerfs_opts"])))
    if "faultfs-crashsim" in r.targets or r.skipped("faultfs-crashsim"):
        crash = "`-o crashsim%s`" % ("," + s["faultfs_opts"] if s.get("faultfs_opts") else "")
        why = r.skipped("faultfs-crashsim")
        rows.append(("faultfs-crashsim", crash + (": skipped (%s)" % why if why else "")))
    if r.rounds:
        ran = [t for t in TARGETS if t in r.targets]
        order = ("in the order %s in round 1, rotated by one in each later round (round 2 starts with %s)"
                 % (", ".join(ran), ran[1 % len(ran)]) if r.setting("rotate") == "1" and len(ran) > 1
                 else "in the order %s" % ", ".join(TARGETS))
        rows.append(("rounds", "%d, interleaved: every target mounted afresh in each round, %s; "
                               "cells give the median (min-max)" % (r.rounds, order)))
    if r.facts.get("standard_seconds"):
        rows.append(("standard workloads took", "%s s" % r.facts["standard_seconds"]))
    rows.append(("mode", mode))
    return ["| | |", "| --- | --- |"] + ["| %s | %s |" % row for row in rows]


def block_markdown(r):
    rounds = r.setting("block_rounds")
    out = ["| workload (%s rounds, A B A B) | unit | %s, plain loop: median (min-max) | faultfs --fs %s: median (min-max) "
           "| faultfs/plain (medians) | target | status |" % (rounds, r.setting("block_fs"), r.setting("block_fs")),
           "| --- | --- | ---: | ---: | ---: | --- | --- |"]
    for w in BLOCK_GOALS:
        cells = []
        for t in ("plain", "faultfs"):
            v = r.block_values(t, w)
            cells.append("FAILED" if not v else "%s (%s)%s" % (
                number(round1(median(v))), spread(v), "" if len(v) == int(rounds) else ", %d of %s rounds" % (len(v), rounds)))
        out.append("| %s | MiB/s | %s | %s | %s | ≥ %sx | %s |" % (
            r.block_label(w), cells[0], cells[1], r.block_ratio(w), BLOCK_GOALS[w], r.block_status(w)))
    return out


def block_where_markdown(r, top=8):
    """The daemon's system calls during one random-write run, per 4 KiB write."""
    writes = r.block_writes()
    rows = parse_strace_counts(read(os.path.join(r.raw, "block.strace.txt"), ""))
    if not rows or not writes:
        return ["_No strace counts were recorded._"]
    traced = r.fio("block.faultfs_strace.randwrite")
    out = ["The faultfs daemon's system calls (all threads, `strace -c -f`) during one more random-write run of "
           "%d 4 KiB writes (%s):" % (writes, "the run under strace failed" if traced is None else
                                      "%s MiB/s under strace, not in the table above" % number(traced)), "",
           "| syscall | calls | per 4 KiB write | errors | seconds (strace) |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, calls, errors, seconds in rows[:top]:
        out.append("| %s | %d | %.2f | %d | %.3f |" % (name, calls, calls / writes, errors, seconds))
    total = sum(c for _, c, _, _ in rows)
    out.append("| all | %d | %.2f | %d | %.3f |" % (total, total / writes, sum(e for _, _, e, _ in rows),
                                                     sum(s for _, _, _, s in rows)))
    ticks = [int(v) for k, v in r.facts.items() if k.startswith("block.daemon_ticks.randwrite.")]
    hz = r.facts.get("hz")
    if ticks and hz:
        out += ["", "Daemon CPU time (user + system) per 4 KiB write in the measured random-write runs: "
                    "median %.0f µs." % (median(ticks) / int(hz) / writes * 1e6)]
    return out


def block_section(r):
    mc, s = r.machine, r.s
    note = s.get("note", "")
    out = [BLOCK_BEGIN, "<!-- Generated by mount-scripts/bench --block; edits between these markers are overwritten. -->",
           "", "### Block mode: faultfs --fs %s against %s on a plain loop device" % (s.get("block_fs"), s.get("block_fs")), "",
           "%s, kernel %s, %s CPUs, load average %s at start / %s at end, faultfs %s%s.%s" % (
               mc.get("date", "?"), mc.get("kernel", "?"), mc.get("nproc", "?"), s.get("load_start", "?"),
               mc.get("load_end", "?"), mc.get("commit", "unknown"),
               ", --quick sizes" if s.get("quick") == "1" else "", " **%s**." % note if note else ""), "",
           "Both file systems are %s MiB, made with the same mkfs options, each on a loop device attached with "
           "`losetup --direct-io=on --sector-size 512` (A: over a plain file on the backing disk; B: over the image "
           "in the faultfs mount that `faultfs mount --fs` makes). %s, ioengine=psync, numjobs=1, direct=0; caches "
           "dropped before each workload and before the random read." % (s.get("block_size_mib"), s.get("fio_version")),
           ""]
    out += block_markdown(r) + [""] + block_where_markdown(r) + [""]
    return "\n".join(out + [BLOCK_END])


def generated_section(r, earlier_million=None):
    out = [BEGIN, "<!-- Generated by mount-scripts/bench; edits between these markers are overwritten. -->", "",
           "### Machine", ""] + machine_markdown(r) + [""]
    if r.standard:
        out += ["### Standard workloads", "",
                "%s, ioengine=psync, numjobs=1, direct=0; cold = after `sync; echo 3 > /proc/sys/vm/drop_caches`, "
                "warm = the second pass over the same file, reopened. Metadata: %s files of %s bytes in %s directories, "
                "one C process (bench.d/meta.c).%s%s" % (
                    r.setting("fio_version"), r.setting("meta_files"), r.setting("meta_size"), r.setting("meta_dirs"),
                    " readdir: one directory of %s files listed after a cache drop (cold), then the median of five more "
                    "listings (warm)." % r.setting("readdir_files") if r.setting("readdir_files") else "",
                    " Each cell: the median of %d interleaved rounds (min-max); ratios of the medians; the best peer is "
                    "the fastest of %s." % (r.rounds, ", ".join(PEERS)) if r.rounds else ""), ""]
        out += standard_markdown(r) + [""]
        if r.facts["meta_error"]:
            out += ["Failed runs:", ""] + meta_failures(r) + [""]
        if r.setting("sync_mib"):
            out += ["### Latency", "",
                    "Per call, in µs: 4k random writes to a file opened O_SYNC (fio `sync=1`, its own completion-"
                    "latency percentiles), and `stat` in the metadata workload (meta.c times every call). Each "
                    "percentile is the median of the rounds; \"best peer\" is the lowest of passthrough_ll, bindfs "
                    "and mergerfs at each percentile."
                    + (" The O_SYNC writes run twice: on each target's normal mount (shown), and on a second mount "
                       "of each FUSE target without its writeback cache (judged): faultfs `-o nowriteback`, "
                       "passthrough_ll without `-o writeback`, mergerfs with `cache.writeback=false`, bindfs as "
                       "always (it has none)." if r.has_nowb() else ""), ""] + latency_markdown(r) + [""]
        if "faultfs-crashsim" in r.targets or r.skipped("faultfs-crashsim"):
            out += ["### crashsim on vs off", ""] + crashsim_markdown(r) + [""]
    if r.standard and "faultfs" in r.targets:
        out += ["### Hot path: %d rules armed for writes (none matching)%s" % (
            r.rules, ", and one rule matching 1% of writes" if r.setting("prob_rule") else ""), ""] + rules_markdown(r) + [""]
        out += ["### Monitor cost (`faultfs monitor` on an idle mount, tracing on)", ""] + monitor_markdown(r) + [""]
    if r.million:
        out += [MILLION_HEAD, ""] + million_markdown(r) + [""]
    elif earlier_million:
        kept = earlier_million.splitlines()
        note = "_Kept from an earlier run: this one did not include `--million`._"
        if note not in kept:
            kept[1:1] = ["", note]
        out += kept + [""]
    else:
        out += ["_The million-file run was not part of this run (`mount-scripts/bench --million`)._", ""]
    return "\n".join(out + [END])


def splice(doc_text, section, begin=BEGIN, end=END):
    """The document with its generated section replaced (or appended)."""
    if doc_text is not None and begin in doc_text and end in doc_text:
        head, rest = doc_text.split(begin, 1)
        return head + section + rest.split(end, 1)[1]
    if doc_text is None:
        doc_text = "# Benchmarks\n\nRun `mount-scripts/bench` (as root) to regenerate the section below.\n"
    return doc_text + "\n" + section + "\n"


def terminal_table(r):
    """The standard workloads for the terminal, in columns (medians ±half the range)."""
    fmt = "%-40s %-9s" + " %15s" * len(TARGETS) + " %-14s %7s %8s  %-32s %s"
    out = [fmt % (("workload", "unit") + tuple(t if t != "faultfs-crashsim" else "ff-crashsim" for t in TARGETS) +
                  ("best peer", "ff/peer", "ff/plain", "target", "status"))]
    for w in r.workloads():
        out.append(fmt % tuple(standard_row(r, w, terminal=True)))
    return out


def terminal_report(r):
    out = []
    if r.standard:
        out += [""] + terminal_table(r) + meta_failures(r) + [""]
        if r.setting("sync_mib"):
            out += latency_markdown(r) + [""]
        if "faultfs-crashsim" in r.targets or r.skipped("faultfs-crashsim"):
            out += crashsim_markdown(r) + [""]
        if "faultfs" in r.targets:
            out += rules_markdown(r) + [""] + monitor_markdown(r) + [""]
    if r.million:
        out += [""] + million_markdown(r) + [""]
    if r.setting("block_fs"):
        out += [""] + block_markdown(r) + [""] + block_where_markdown(r) + [""]
    return "\n".join(out)


# ---------------------------------------------------------------- recording (I/O)

def run_text(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def git_commit(repo):
    """HEAD's commit, read from .git without running git."""
    git = os.path.join(repo, ".git")
    if os.path.isfile(git):   # a worktree: "gitdir: PATH"
        git = read(git, "").split("gitdir:", 1)[-1].strip()
    head = (read(os.path.join(git, "HEAD")) or "").strip()
    if not head:
        return "unknown"
    sha = head
    if head.startswith("ref:"):
        ref = head[4:].strip()
        common = (read(os.path.join(git, "commondir")) or "").strip()
        roots = [git] + ([os.path.normpath(os.path.join(git, common))] if common else [])
        sha = ""
        for root in roots:
            sha = (read(os.path.join(root, ref)) or "").strip()
            if not sha:
                m = re.search(r"^([0-9a-f]{40}) %s$" % re.escape(ref), read(os.path.join(root, "packed-refs"), ""), re.M)
                sha = m.group(1) if m else ""
            if sha:
                break
    return sha[:12] + " (plus any uncommitted changes in the work tree)" if sha else "unknown"


def record_machine(raw, work, repo):
    with open("/proc/meminfo") as f:
        kib = int(re.search(r"^MemTotal:\s+(\d+)", f.read(), re.M).group(1))
    fs = run_text(["findmnt", "-n", "-o", "FSTYPE,SOURCE,OPTIONS", "-T", work]).split()
    model = re.search(r"^Model name:\s*(.*)$", run_text(["lscpu"]), re.M)
    with open("/proc/loadavg") as f:
        load_end = f.read().split()[0]
    machine = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "kernel": os.uname().release,
               "nproc": run_text(["nproc"]), "cpu_model": model.group(1) if model else "",
               "memory": "%.1f GiB" % (kib / 1048576), "load_end": load_end,
               "backing_fs": "%s on %s (%s)" % tuple(fs[:3]) if len(fs) >= 3 else "?",
               "libfuse_headers": run_text(["pkg-config", "--modversion", "fuse3"]),
               "libfuse_package": run_text(["dpkg-query", "-W", "-f", "${Version}", "libfuse3-3"]) or "?",
               "commit": git_commit(repo)}
    with open(os.path.join(raw, "machine.json"), "w") as f:
        json.dump(machine, f, indent=1)


def sample(pid, out):
    """Every second while pid lives: the peak fd count and peak VmRSS so far."""
    fds = rss = 0
    while os.path.exists("/proc/%d" % pid):
        try:
            fds = max(fds, len(os.listdir("/proc/%d/fd" % pid)))
            rss = max(rss, status_kib(read("/proc/%d/status" % pid, ""), "VmRSS") or 0)
        except OSError:
            break
        with open(out + ".tmp", "w") as f:
            f.write("%d %d\n" % (fds, rss))
        os.replace(out + ".tmp", out)
        time.sleep(1)


def main(argv):
    if len(argv) == 2 and argv[0] == "fio-mibs":
        with open(argv[1]) as f:
            print(number(fio_mibs(json.load(f))))
        return 0
    if len(argv) == 3 and argv[0] == "sample":
        sample(int(argv[1]), argv[2])
        return 0
    if argv[:1] == ["finish"] and len(argv) >= 6:
        raw, opts = argv[1], dict(zip(argv[2::2], argv[3::2]))
        record_machine(raw, opts["--work"], opts["--repo"])
        r = Run(raw)
        print(terminal_report(r))
        if "--doc" in opts:
            doc = opts["--doc"]
            text = read(doc)
            if r.standard or r.million:
                text = splice(text, generated_section(r, previous_million(text)))
            if r.setting("block_fs"):
                text = splice(text, block_section(r), BLOCK_BEGIN, BLOCK_END)
            with open(doc + ".tmp", "w") as f:
                f.write(text)
            os.chmod(doc + ".tmp", 0o644)
            os.replace(doc + ".tmp", doc)
            print("[bench %s] wrote %s" % (time.strftime("%H:%M:%S"), doc), file=sys.stderr)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
