// Parsers for the text files the Monitor module reads from /proc, /sys and
// debugfs. No I/O here: every function takes the file's contents as a String.
//
// Common rules (why: kernels differ, and a counter that does not exist must
// never be drawn as a flat 0):
// - unknown lines are ignored;
// - a counter that is not in the text is `nil`, never 0;
// - sizes are converted to bytes ("kB" x 1024).

// MARK: - Small shared helpers

/// Splits on spaces and tabs, dropping empty pieces.
@inline(__always)
func fields(_ line: Substring) -> [Substring] {
    line.split(whereSeparator: { $0 == " " || $0 == "\t" })
}

/// Lines of a text, without empty ones.
@inline(__always)
func lines(_ text: String) -> [Substring] {
    text.split(whereSeparator: { $0 == "\n" || $0 == "\r" })
}

/// Parses the single integer in a one-value sysfs file ("1\n"); nil when empty
/// or not a number (a missing file is the caller's nil).
public func parseSingleInt(_ text: String?) -> Int64? {
    guard let text else { return nil }
    let t = text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" })
    guard t.count == 1 else { return nil }
    return Int64(t[0])
}

/// A device number as the kernel prints it ("0:39"): FUSE mounts are major 0.
public struct DeviceID: Hashable, Sendable, CustomStringConvertible, Comparable {
    public var major: UInt32
    public var minor: UInt32
    public init(major: UInt32, minor: UInt32) { self.major = major; self.minor = minor }
    /// Parses "0:39" (a trailing ':' as in "bdi 0:39:" is tolerated).
    public init?(_ text: some StringProtocol) {
        var s = Substring(text)
        if s.hasSuffix(":") { s = s.dropLast() }
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let ma = UInt32(parts[0]), let mi = UInt32(parts[1]) else { return nil }
        major = ma; minor = mi
    }
    public var description: String { "\(major):\(minor)" }
    public static func < (a: DeviceID, b: DeviceID) -> Bool {
        (a.major, a.minor) < (b.major, b.minor)
    }
}

// MARK: - /proc/meminfo

/// /proc/meminfo. Lines with "kB" go to `bytes` (x1024); lines without a unit
/// (HugePages_Total...) are page counts and go to `counts`, so they are not
/// mistaken for sizes.
public struct MemInfo: Sendable, Equatable {
    public var bytes: [String: Int64] = [:]
    public var counts: [String: Int64] = [:]

    public init(bytes: [String: Int64] = [:], counts: [String: Int64] = [:]) {
        self.bytes = bytes; self.counts = counts
    }

    public static func parse(_ text: String) -> MemInfo {
        var m = MemInfo()
        for line in lines(text) {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = String(line[..<colon])
            let rest = fields(line[line.index(after: colon)...])
            guard let first = rest.first, let v = Int64(first) else { continue }
            if rest.count >= 2, rest[1] == "kB" {
                m.bytes[key] = v &* 1024
            } else if rest.count == 1 {
                m.counts[key] = v
            }
        }
        return m
    }

    public subscript(_ key: String) -> Int64? { bytes[key] }
    public var dirty: Int64? { bytes["Dirty"] }
    public var writeback: Int64? { bytes["Writeback"] }
    public var memAvailable: Int64? { bytes["MemAvailable"] }
    public var cached: Int64? { bytes["Cached"] }
    /// Always 0 since 6.17 (FUSE stopped using temporary pages); absent on
    /// kernels that removed the line.
    public var writebackTmp: Int64? { bytes["WritebackTmp"] }
}

// MARK: - /proc/vmstat

/// /proc/vmstat: "name value" per line. Counters are pages or event counts.
public struct VMStat: Sendable, Equatable {
    public var counters: [String: Int64] = [:]

    public init(counters: [String: Int64] = [:]) { self.counters = counters }

    public static func parse(_ text: String) -> VMStat {
        var v = VMStat()
        v.counters.reserveCapacity(256)
        for line in lines(text) {
            let f = fields(line)
            guard f.count == 2, let n = Int64(f[1]) else { continue }
            v.counters[String(f[0])] = n
        }
        return v
    }

    public subscript(_ key: String) -> Int64? { counters[key] }

    public var nrDirty: Int64? { counters["nr_dirty"] }
    public var nrWriteback: Int64? { counters["nr_writeback"] }
    public var nrDirtied: Int64? { counters["nr_dirtied"] }
    /// Counts failed writeback completions too (see the reference notes).
    public var nrWritten: Int64? { counters["nr_written"] }
    public var nrVmscanImmediateReclaim: Int64? { counters["nr_vmscan_immediate_reclaim"] }
    public var nrThrottledWritten: Int64? { counters["nr_throttled_written"] }
    public var oomKill: Int64? { counters["oom_kill"] }
    public var nrDirtyThreshold: Int64? { counters["nr_dirty_threshold"] }
    public var nrDirtyBackgroundThreshold: Int64? { counters["nr_dirty_background_threshold"] }

    /// Every counter whose name starts with `prefix` (e.g. "pgscan_").
    public func family(_ prefix: String) -> [String: Int64] {
        counters.filter { $0.key.hasPrefix(prefix) }
    }

    /// Pages scanned, summed over the *reclaimers* (kswapd, direct,
    /// khugepaged, proactive). Why not every pgscan_*: pgscan_anon/_file split
    /// the same pages a second way and pgscan_direct_throttle counts events,
    /// so summing all would double count. nil if none of them exists.
    public var pgscanTotal: Int64? { sum(Self.reclaimers.map { "pgscan_" + $0 }) }
    /// Same rule as `pgscanTotal`.
    public var pgstealTotal: Int64? { sum(Self.reclaimers.map { "pgsteal_" + $0 }) }
    /// Sum of allocstall_<zone>.
    public var allocstallTotal: Int64? {
        let f = family("allocstall_")
        return f.isEmpty ? nil : f.values.reduce(0, &+)
    }

    static let reclaimers = ["kswapd", "direct", "khugepaged", "proactive"]

    func sum(_ keys: [String]) -> Int64? {
        var total: Int64 = 0, any = false
        for k in keys { if let v = counters[k] { total &+= v; any = true } }
        return any ? total : nil
    }
}

// MARK: - /proc/pressure/{io,memory}

/// One line of a PSI file: "some avg10=0.00 avg60=0.00 avg300=0.00 total=0".
public struct PressureLine: Sendable, Equatable {
    public var avg10: Double?
    public var avg60: Double?
    public var avg300: Double?
    /// Total stall time in microseconds.
    public var totalUs: Int64?
    public init(avg10: Double? = nil, avg60: Double? = nil, avg300: Double? = nil, totalUs: Int64? = nil) {
        self.avg10 = avg10; self.avg60 = avg60; self.avg300 = avg300; self.totalUs = totalUs
    }
}

/// /proc/pressure/io or /proc/pressure/memory. `full` is absent on old
/// kernels' cpu file and may be absent elsewhere.
public struct Pressure: Sendable, Equatable {
    public var some: PressureLine?
    public var full: PressureLine?
    public init(some: PressureLine? = nil, full: PressureLine? = nil) { self.some = some; self.full = full }

    public static func parse(_ text: String) -> Pressure {
        var p = Pressure()
        for line in lines(text) {
            let f = fields(line)
            guard let kind = f.first else { continue }
            var l = PressureLine()
            for token in f.dropFirst() {
                guard let eq = token.firstIndex(of: "=") else { continue }
                let k = token[..<eq], v = token[token.index(after: eq)...]
                switch k {
                case "avg10": l.avg10 = Double(v)
                case "avg60": l.avg60 = Double(v)
                case "avg300": l.avg300 = Double(v)
                case "total": l.totalUs = Int64(v)
                default: break
                }
            }
            if kind == "some" { p.some = l } else if kind == "full" { p.full = l }
        }
        return p
    }
}

// MARK: - debugfs bdi/<dev>/stats

/// debugfs `bdi/0:N/stats`: "BdiWriteback:   0 kB", "BdiWriteBandwidth: 102400 kBps",
/// "b_dirty:  1", "state:  1" (state is hex). Sizes are bytes, bandwidth bytes/s.
public struct BdiStats: Sendable, Equatable {
    public var values: [String: Int64] = [:]
    public init(values: [String: Int64] = [:]) { self.values = values }

    public static func parse(_ text: String) -> BdiStats {
        var s = BdiStats()
        for line in lines(text) {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = String(line[..<colon]).trimmingSpaces()
            let rest = fields(line[line.index(after: colon)...])
            guard let first = rest.first else { continue }
            if key == "state" {
                if let v = Int64(first.hasPrefix("0x") ? first.dropFirst(2) : first, radix: 16) { s.values[key] = v }
                continue
            }
            guard let v = Int64(first) else { continue }
            let unit = rest.count >= 2 ? rest[1] : ""
            switch unit {
            case "kB", "kBps": s.values[key] = v &* 1024
            default: s.values[key] = v
            }
        }
        return s
    }

    public subscript(_ key: String) -> Int64? { values[key] }
    public var bdiWriteback: Int64? { values["BdiWriteback"] }
    public var bdiReclaimable: Int64? { values["BdiReclaimable"] }
    public var bdiDirtyThresh: Int64? { values["BdiDirtyThresh"] }
    public var dirtyThresh: Int64? { values["DirtyThresh"] }
    public var backgroundThresh: Int64? { values["BackgroundThresh"] }
    /// Bytes per second; 0 while the daemon stalls.
    public var writeBandwidth: Int64? { values["BdiWriteBandwidth"] }
    public var bDirty: Int64? { values["b_dirty"] }
    public var state: Int64? { values["state"] }
    /// What the mount has in flight (reclaimable + writeback), the quantity
    /// the strict limit is applied to. nil unless both are present.
    public var inFlight: Int64? {
        guard let r = bdiReclaimable, let w = bdiWriteback else { return nil }
        return r + w
    }
}

// MARK: - /sys/class/bdi/<dev>/*

/// The bdi knobs, each read from its own one-value file. Pass nil for a
/// file that does not exist (e.g. max_bytes before 6.2).
public struct BdiSettings: Sendable, Equatable {
    public var maxRatio: Int64?
    public var minRatio: Int64?
    public var maxBytes: Int64?
    public var strictLimit: Int64?
    public init(maxRatio: Int64? = nil, minRatio: Int64? = nil, maxBytes: Int64? = nil, strictLimit: Int64? = nil) {
        self.maxRatio = maxRatio; self.minRatio = minRatio; self.maxBytes = maxBytes; self.strictLimit = strictLimit
    }
    public static func parse(maxRatio: String?, minRatio: String?, maxBytes: String?, strictLimit: String?) -> BdiSettings {
        BdiSettings(maxRatio: parseSingleInt(maxRatio), minRatio: parseSingleInt(minRatio),
                    maxBytes: parseSingleInt(maxBytes), strictLimit: parseSingleInt(strictLimit))
    }
}

// MARK: - /sys/fs/fuse/connections/<N>/*

/// FUSE control files; absent when fusectl is not mounted.
public struct FuseConnectionState: Sendable, Equatable {
    public var waiting: Int64?
    public var maxBackground: Int64?
    public var congestionThreshold: Int64?
    public init(waiting: Int64? = nil, maxBackground: Int64? = nil, congestionThreshold: Int64? = nil) {
        self.waiting = waiting; self.maxBackground = maxBackground; self.congestionThreshold = congestionThreshold
    }
    public static func parse(waiting: String?, maxBackground: String?, congestionThreshold: String?) -> FuseConnectionState {
        FuseConnectionState(waiting: parseSingleInt(waiting), maxBackground: parseSingleInt(maxBackground),
                            congestionThreshold: parseSingleInt(congestionThreshold))
    }
}

// MARK: - cgroup memory.stat

public enum CgroupVersion: String, Sendable, Equatable, Codable {
    case v1, v2, unknown
}

/// cgroup memory.stat normalised over v1 (dirty, writeback, cache, rss) and
/// v2 (file_dirty, file_writeback, file, anon). All values are bytes.
public struct CgroupMemoryStat: Sendable, Equatable {
    public var version: CgroupVersion = .unknown
    public var dirty: Int64?
    public var writeback: Int64?
    /// Page cache: v1 "cache", v2 "file".
    public var file: Int64?
    /// Anonymous memory: v1 "rss", v2 "anon".
    public var anon: Int64?
    /// Every line as read, for counters not normalised here.
    public var raw: [String: Int64] = [:]
    public init() {}

    public static func parse(_ text: String) -> CgroupMemoryStat {
        var s = CgroupMemoryStat()
        for line in lines(text) {
            let f = fields(line)
            guard f.count == 2, let v = Int64(f[1]) else { continue }
            s.raw[String(f[0])] = v
        }
        // v2 names are distinctive ("file_dirty"); v1 has "cache"/"dirty".
        if s.raw["file_dirty"] != nil || s.raw["file"] != nil || s.raw["anon"] != nil {
            s.version = .v2
            s.dirty = s.raw["file_dirty"]; s.writeback = s.raw["file_writeback"]
            s.file = s.raw["file"]; s.anon = s.raw["anon"]
        } else if s.raw["cache"] != nil || s.raw["dirty"] != nil || s.raw["rss"] != nil {
            s.version = .v1
            s.dirty = s.raw["dirty"]; s.writeback = s.raw["writeback"]
            s.file = s.raw["cache"]; s.anon = s.raw["rss"]
        }
        return s
    }
}

// MARK: - /proc/PID/stat and /proc/PID/wchan

/// The fields of /proc/PID/stat we use. The comm is between the first '('
/// and the *last* ')': a comm may itself contain spaces, '(' and ')'.
public struct ProcStat: Sendable, Equatable {
    public var pid: Int32
    public var comm: String
    /// R running, S sleeping, D uninterruptible (e.g. in balance_dirty_pages
    /// or waiting for writeback), Z, T...
    public var state: Character
    public var utimeTicks: Int64
    public var stimeTicks: Int64
    public var rssPages: Int64

    public init(pid: Int32, comm: String, state: Character, utimeTicks: Int64, stimeTicks: Int64, rssPages: Int64) {
        self.pid = pid; self.comm = comm; self.state = state
        self.utimeTicks = utimeTicks; self.stimeTicks = stimeTicks; self.rssPages = rssPages
    }

    public static func parse(_ text: String) -> ProcStat? {
        guard let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")"), open < close,
              let pid = Int32(text[..<open].trimmingSpaces()) else { return nil }
        let comm = String(text[text.index(after: open)..<close])
        // After ")" field 3 (state) is rest[0]; field n is rest[n - 3].
        let rest = text[text.index(after: close)...].split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard rest.count >= 22, let st = rest[0].first,
              let ut = Int64(rest[11]), let stt = Int64(rest[12]), let rss = Int64(rest[21]) else { return nil }
        return ProcStat(pid: pid, comm: comm, state: st, utimeTicks: ut, stimeTicks: stt, rssPages: rss)
    }
}

/// /proc/PID/wchan: the kernel function a task sleeps in. "0" or empty means
/// running or hidden (kptr_restrict), returned as nil.
public func parseWchan(_ text: String) -> String? {
    let t = text.trimmingSpaces()
    return (t.isEmpty || t == "0") ? nil : t
}

extension StringProtocol {
    /// Trims spaces, tabs and newlines without Foundation.
    func trimmingSpaces() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let start = firstIndex(where: { !isSpace($0) }),
              let end = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[start...end])
    }
}

/// /proc/PID/fdinfo/N: "pos:\t0\nflags:\t0100000\nmnt_id:\t24\nino:\t3\n..."
/// (ino since Linux 5.14): which mount and inode an fd refers to, read
/// without touching the file.
public enum FdInfo {
    public static func parse(_ text: String) -> (mountID: Int, ino: UInt64)? {
        var mount: Int?, ino: UInt64?
        for line in text.split(separator: "\n") {
            if line.hasPrefix("mnt_id:") { mount = Int(line.dropFirst(7).trimmingSpaces()) }
            if line.hasPrefix("ino:") { ino = UInt64(line.dropFirst(4).trimmingSpaces()) }
        }
        guard let mount, let ino else { return nil }
        return (mount, ino)
    }
}
