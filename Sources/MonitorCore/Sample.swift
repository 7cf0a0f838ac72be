import FaultRules
// One sample = the values of every counter at one instant. A counter that
// the kernel does not have (or that could not be read this time) is simply
// not in `values`: it is written as an empty CSV cell and left out of the
// JSON line. It is never written as 0, because 0 is a real, meaningful value.

/// Names of the metrics the Monitor records. Units are in the names.
public enum Metric {
    // /proc/meminfo (bytes)
    public static let dirty = "mem.dirty_bytes"
    public static let writeback = "mem.writeback_bytes"
    public static let memAvailable = "mem.available_bytes"
    public static let cached = "mem.cached_bytes"
    public static let writebackTmp = "mem.writeback_tmp_bytes"
    // /proc/vmstat ("vm." + the kernel's name; pages or events)
    public static let vmPrefix = "vm."
    public static let nrDirty = "vm.nr_dirty"
    public static let nrWriteback = "vm.nr_writeback"
    public static let nrDirtied = "vm.nr_dirtied"
    public static let nrWritten = "vm.nr_written"
    public static let immediateReclaim = "vm.nr_vmscan_immediate_reclaim"
    public static let throttledWritten = "vm.nr_throttled_written"
    public static let oomKill = "vm.oom_kill"
    public static let dirtyThreshold = "vm.nr_dirty_threshold"
    public static let dirtyBackgroundThreshold = "vm.nr_dirty_background_threshold"
    public static let pgscanTotal = "vm.pgscan_total"
    public static let pgstealTotal = "vm.pgsteal_total"
    public static let allocstallTotal = "vm.allocstall_total"
    // debugfs bdi stats (bytes, bytes/s)
    public static let bdiWriteback = "bdi.writeback_bytes"
    public static let bdiReclaimable = "bdi.reclaimable_bytes"
    public static let bdiDirtyThresh = "bdi.dirty_thresh_bytes"
    public static let bdiGlobalDirtyThresh = "bdi.global_dirty_thresh_bytes"
    public static let bdiBackgroundThresh = "bdi.background_thresh_bytes"
    public static let bdiWriteBandwidth = "bdi.write_bandwidth_bps"
    // /sys/fs/fuse/connections/N
    public static let fuseWaiting = "fuse.waiting"
    public static let fuseMaxBackground = "fuse.max_background"
    public static let fuseCongestionThreshold = "fuse.congestion_threshold"
    // cgroup memory.stat (bytes)
    public static let cgDirty = "cg.dirty_bytes"
    public static let cgWriteback = "cg.writeback_bytes"
    public static let cgFile = "cg.file_bytes"
    public static let cgAnon = "cg.anon_bytes"
    // the workload's main process
    public static let procRssPages = "proc.rss_pages"
    public static let procUtimeTicks = "proc.utime_ticks"
    public static let procStimeTicks = "proc.stime_ticks"
    /// 1 while the process is in state D (uninterruptible), else 0.
    public static let procBlocked = "proc.blocked"
    /// Another watched process (the daemon): "proc.daemon.rss_pages".
    public static func proc(_ role: String, _ field: String) -> String { "proc.\(role).\(field)" }
    /// e.g. "psi.io.some.avg10", "psi.memory.full.total_us"
    public static func psi(_ resource: String, _ kind: String, _ field: String) -> String {
        "psi.\(resource).\(kind).\(field)"
    }

    /// The vmstat counters recorded individually (besides the totals).
    public static let vmstatCounters = [
        "nr_dirty", "nr_writeback", "nr_dirtied", "nr_written", "nr_vmscan_immediate_reclaim",
        "nr_throttled_written", "oom_kill", "nr_dirty_threshold", "nr_dirty_background_threshold",
    ]
    /// vmstat families recorded counter by counter (pgscan_kswapd, ...).
    public static let vmstatFamilies = ["pgscan_", "pgsteal_", "allocstall_"]

    /// A column order for CSV that covers everything the `record` helpers
    /// write on a 6.x kernel. Columns of counters that do not exist stay empty.
    public static let standardColumns: [String] = {
        var c = [dirty, writeback, memAvailable, cached, writebackTmp]
        c += vmstatCounters.map { vmPrefix + $0 }
        c += [pgscanTotal, pgstealTotal, allocstallTotal]
        c += ["kswapd", "direct", "khugepaged", "proactive", "anon", "file"].map { "vm.pgscan_" + $0 }
        c += ["vm.pgscan_direct_throttle"]
        c += ["kswapd", "direct", "khugepaged", "proactive", "anon", "file"].map { "vm.pgsteal_" + $0 }
        c += ["dma", "dma32", "normal", "movable", "device"].map { "vm.allocstall_" + $0 }
        c += [bdiWriteback, bdiReclaimable, bdiDirtyThresh, bdiGlobalDirtyThresh, bdiBackgroundThresh, bdiWriteBandwidth]
        c += [fuseWaiting, fuseMaxBackground, fuseCongestionThreshold]
        for r in ["io", "memory"] {
            for k in ["some", "full"] {
                for f in ["avg10", "avg60", "avg300", "total_us"] { c.append(psi(r, k, f)) }
            }
        }
        c += [cgDirty, cgWriteback, cgFile, cgAnon]
        c += [procRssPages, procUtimeTicks, procStimeTicks, procBlocked]
        c += ["rss_pages", "utime_ticks", "stime_ticks", "blocked"].map { proc("daemon", $0) }
        c += memoryScenarioColumns
        return c
    }()
}

public struct Sample: Sendable, Equatable {
    /// Monotonic or realtime ns; the caller decides, but samples, injections
    /// and trace events of one run must share the clock.
    public var timeNs: Int64
    /// Present counters only. Double holds integers exactly up to 2^53.
    public var values: [String: Double]

    public init(timeNs: Int64, values: [String: Double] = [:]) {
        self.timeNs = timeNs; self.values = values
    }

    public subscript(_ key: String) -> Double? {
        get { values[key] }
        set { values[key] = newValue }
    }

    mutating func set(_ key: String, _ v: Int64?) { if let v { values[key] = Double(v) } }
    mutating func set(_ key: String, _ v: Double?) { if let v, v.isFinite { values[key] = v } }

    // The `record` helpers put parsed files under the standard metric names,
    // so the Monitor module does not have to know them.

    public mutating func record(_ m: MemInfo) {
        set(Metric.dirty, m.dirty); set(Metric.writeback, m.writeback)
        set(Metric.memAvailable, m.memAvailable); set(Metric.cached, m.cached)
        set(Metric.writebackTmp, m.writebackTmp)
    }

    public mutating func record(_ v: VMStat) {
        for name in Metric.vmstatCounters { set(Metric.vmPrefix + name, v[name]) }
        for prefix in Metric.vmstatFamilies {
            for (k, n) in v.family(prefix) { set(Metric.vmPrefix + k, n) }
        }
        set(Metric.pgscanTotal, v.pgscanTotal); set(Metric.pgstealTotal, v.pgstealTotal)
        set(Metric.allocstallTotal, v.allocstallTotal)
    }

    public mutating func record(_ b: BdiStats) {
        set(Metric.bdiWriteback, b.bdiWriteback); set(Metric.bdiReclaimable, b.bdiReclaimable)
        set(Metric.bdiDirtyThresh, b.bdiDirtyThresh); set(Metric.bdiGlobalDirtyThresh, b.dirtyThresh)
        set(Metric.bdiBackgroundThresh, b.backgroundThresh); set(Metric.bdiWriteBandwidth, b.writeBandwidth)
    }

    public mutating func record(_ f: FuseConnectionState) {
        set(Metric.fuseWaiting, f.waiting); set(Metric.fuseMaxBackground, f.maxBackground)
        set(Metric.fuseCongestionThreshold, f.congestionThreshold)
    }

    /// `resource` is "io" or "memory".
    public mutating func record(_ p: Pressure, resource: String) {
        for (kind, line) in [("some", p.some), ("full", p.full)] {
            guard let line else { continue }
            set(Metric.psi(resource, kind, "avg10"), line.avg10)
            set(Metric.psi(resource, kind, "avg60"), line.avg60)
            set(Metric.psi(resource, kind, "avg300"), line.avg300)
            set(Metric.psi(resource, kind, "total_us"), line.totalUs)
        }
    }

    public mutating func record(_ c: CgroupMemoryStat) {
        set(Metric.cgDirty, c.dirty); set(Metric.cgWriteback, c.writeback)
        set(Metric.cgFile, c.file); set(Metric.cgAnon, c.anon)
    }

    /// A process other than the workload's main one, under "proc.<role>.*".
    public mutating func record(_ p: ProcStat, role: String) {
        set(Metric.proc(role, "rss_pages"), p.rssPages); set(Metric.proc(role, "utime_ticks"), p.utimeTicks)
        set(Metric.proc(role, "stime_ticks"), p.stimeTicks); set(Metric.proc(role, "blocked"), Int64(p.state == "D" ? 1 : 0))
    }

    public mutating func record(_ p: ProcStat) {
        set(Metric.procRssPages, p.rssPages); set(Metric.procUtimeTicks, p.utimeTicks)
        set(Metric.procStimeTicks, p.stimeTicks); set(Metric.procBlocked, Int64(p.state == "D" ? 1 : 0))
    }
}

/// Writes samples as CSV (fixed columns, absent = empty cell) or JSON lines
/// (`{"time_ns":N,"mem.dirty_bytes":8609792,...}`: absent keys are LEFT OUT,
/// not null; keys sorted so files diff well). The first CSV column is time_ns.
public struct SampleSeries: Sendable {
    public var columns: [String]

    public init(columns: [String] = Metric.standardColumns) { self.columns = columns }

    public func csvHeader() -> String {
        (["time_ns"] + columns).joined(separator: ",")
    }

    public func csvRow(_ s: Sample) -> String {
        var out = String(s.timeNs)
        out.reserveCapacity(columns.count * 8)
        for c in columns {
            out += ","
            if let v = s.values[c] { out += formatNumber(v) }
        }
        return out
    }

    public func jsonLine(_ s: Sample) -> String {
        var out = "{\"time_ns\":\(s.timeNs)"
        for k in s.values.keys.sorted() {
            guard let v = s.values[k], v.isFinite else { continue }
            out += "," + jsonString(k) + ":" + formatNumber(v)
        }
        return out + "}"
    }

    /// Reads back a line written by `jsonLine`. nulls are treated as absent,
    /// so a writer that prefers nulls is read the same way.
    public static func parseJSONLine(_ line: String) -> Sample? {
        guard case .object(let members)? = try? parseJSON(line),
              let t = members.first(where: { $0.key == "time_ns" })?.value.int64 else { return nil }
        var s = Sample(timeNs: t)
        for (k, v) in members where k != "time_ns" {
            if let d = v.double { s.values[k] = d }
        }
        return s
    }

    /// Reads a whole samples.jsonl; bad lines are counted, not fatal.
    public static func parseJSONLines(_ text: String) -> (samples: [Sample], badLines: Int) {
        var out: [Sample] = [], bad = 0
        for l in lines(text) where !l.allSatisfy({ $0 == " " }) {
            if let s = parseJSONLine(String(l)) { out.append(s) } else { bad += 1 }
        }
        return (out, bad)
    }
}

// MARK: - number and string formatting (no Foundation)

/// Integers without ".0" (counters), other values with Swift's shortest
/// round-trip representation (valid JSON).
func formatNumber(_ v: Double) -> String {
    if v == v.rounded(), abs(v) < 9.007e15 { return String(Int64(v)) }
    return String(v)
}

/// Fixed-point formatting ("12.3") for labels.
func formatFixed(_ v: Double, _ decimals: Int) -> String {
    guard v.isFinite else { return "?" }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let r = (abs(v) * scale).rounded()
    guard r < 9e18 else { return String(v) }
    let n = Int64(r), sign = (v < 0 && n != 0) ? "-" : ""
    if decimals == 0 { return sign + String(n) }
    let ip = n / Int64(scale), fp = n % Int64(scale)
    var f = String(fp)
    while f.count < decimals { f = "0" + f }
    return sign + String(ip) + "." + f
}

/// Bytes → "12.3 MiB".
public func formatMiB(_ bytes: Double) -> String { formatFixed(bytes / 1048576, 1) + " MiB" }
