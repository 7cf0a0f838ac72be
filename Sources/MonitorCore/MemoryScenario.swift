// "What did the stuck or failing writeback do to memory?": the workload's
// memory cgroup over time, the mount's bdi limits as they were during the
// run, the machine's reclaim throttling, and one line saying what happened
// to the writer. Pure: parsers of the files read, and derivations over a
// RunData.

// MARK: - metric names

extension Metric {
    // The workload's memory cgroup (bytes; events are counts since it was made).
    /// v2 memory.current, v1 memory.usage_in_bytes.
    public static let cgCurrent = "cg.current_bytes"
    /// v2 memory.max, v1 memory.limit_in_bytes; absent when unlimited.
    public static let cgMax = "cg.max_bytes"
    /// memory.events (v2); v1 has only `max` (memory.failcnt) and `oom_kill` (memory.oom_control).
    public static func cgEvent(_ name: String) -> String { "cg.events." + name }
    public static let cgEventNames = ["high", "max", "oom", "oom_kill"]

    // The mount's bdi knobs (/sys/class/bdi/<dev>/), sampled: they can change during a run.
    public static let bdiMaxRatio = "bdi.max_ratio"
    /// In millionths (max_ratio_fine: 1,000,000 = 100 %).
    public static let bdiMaxRatioFine = "bdi.max_ratio_fine"
    public static let bdiMaxBytes = "bdi.max_bytes"
    public static let bdiStrictLimit = "bdi.strict_limit"

    /// The columns of this file, appended to `standardColumns`.
    static let memoryScenarioColumns: [String] =
        [cgCurrent, cgMax] + cgEventNames.map(cgEvent) + [bdiMaxRatio, bdiMaxRatioFine, bdiMaxBytes, bdiStrictLimit]
}

// MARK: - cgroup files

/// A memory cgroup's usage, limit and event counters, over v1 and v2.
public struct CgroupMemoryState: Sendable, Equatable {
    public var current: Int64?
    /// nil: no limit ("max" in v2, a huge number in v1).
    public var max: Int64?
    /// Event counts by v2 name: "high", "max", "oom", "oom_kill". A name the
    /// version does not have is absent.
    public var events: [String: Int64] = [:]
    public init(current: Int64? = nil, max: Int64? = nil, events: [String: Int64] = [:]) {
        self.current = current; self.max = max; self.events = events
    }

    /// v2: memory.current, memory.max ("max" = none), memory.events.
    public static func parseV2(current: String?, max: String?, events: String?) -> CgroupMemoryState {
        CgroupMemoryState(current: parseSingleInt(current), max: parseLimit(max), events: parseEvents(events))
    }

    /// v1: memory.usage_in_bytes, memory.limit_in_bytes, memory.failcnt (how
    /// often the usage hit the limit: v2's `max`), memory.oom_control (its
    /// `oom_kill` line).
    public static func parseV1(usage: String?, limit: String?, failcnt: String?, oomControl: String?) -> CgroupMemoryState {
        var s = CgroupMemoryState(current: parseSingleInt(usage), max: parseLimit(limit))
        if let f = parseSingleInt(failcnt) { s.events["max"] = f }
        if let k = parseEvents(oomControl)["oom_kill"] { s.events["oom_kill"] = k }
        return s
    }

    /// "name value" lines (memory.events, memory.oom_control).
    public static func parseEvents(_ text: String?) -> [String: Int64] {
        var out: [String: Int64] = [:]
        for line in lines(text ?? "") {
            let f = fields(line)
            if f.count == 2, let v = Int64(f[1]) { out[String(f[0])] = v }
        }
        return out
    }

    /// "max" or v1's "no limit" (PAGE_COUNTER_MAX pages: above 2^62) → nil.
    static func parseLimit(_ text: String?) -> Int64? {
        guard let v = parseSingleInt(text), v < (Int64(1) << 62) else { return nil }
        return v
    }
}

extension Sample {
    public mutating func record(_ c: CgroupMemoryState) {
        set(Metric.cgCurrent, c.current); set(Metric.cgMax, c.max)
        for (k, v) in c.events where Metric.cgEventNames.contains(k) { set(Metric.cgEvent(k), v) }
    }

    /// The bdi knobs (limits), sampled so that a change during the run is seen.
    public mutating func record(limits b: BdiSettings, maxRatioFine: Int64?) {
        set(Metric.bdiMaxRatio, b.maxRatio); set(Metric.bdiMaxRatioFine, maxRatioFine)
        set(Metric.bdiMaxBytes, b.maxBytes); set(Metric.bdiStrictLimit, b.strictLimit)
    }
}

// MARK: - the bdi limits a run asked for

/// What `faultfs run --bdi-max-ratio/--bdi-max-bytes/--bdi-strict-limit` set.
public struct BdiLimits: Sendable, Equatable {
    /// Percent, 0...100.
    public var maxRatio: Int64?
    public var maxBytes: Int64?
    public var strictLimit: Bool?
    public init(maxRatio: Int64? = nil, maxBytes: Int64? = nil, strictLimit: Bool? = nil) {
        self.maxRatio = maxRatio; self.maxBytes = maxBytes; self.strictLimit = strictLimit
    }
    public var isEmpty: Bool { maxRatio == nil && maxBytes == nil && strictLimit == nil }

    /// The files to write, in order: max_bytes after max_ratio (each sets
    /// the same limit in its own unit, so the later one wins).
    public var writes: [(file: String, value: String)] {
        var out: [(String, String)] = []
        if let r = maxRatio { out.append(("max_ratio", String(r))) }
        if let b = maxBytes { out.append(("max_bytes", String(b))) }
        if let s = strictLimit { out.append(("strict_limit", s ? "1" : "0")) }
        return out
    }

    /// "max_ratio=100 strict_limit=0"
    public var description: String { writes.map { "\($0.file)=\($0.value)" }.joined(separator: " ") }

    /// "on"/"off" (also 1/0, true/false) → Bool.
    public static func parseSwitch(_ text: String) -> Bool? {
        switch text.lowercased() {
        case "on", "1", "true", "yes": return true
        case "off", "0", "false", "no": return false
        default: return nil
        }
    }
}

extension SettingKey {
    /// The limits `faultfs run` was asked to set (`BdiLimits.description`).
    public static let bdiRequested = "bdi.requested"
    /// Thread ids seen in the workload's memory cgroup during the run, space-separated.
    public static let cgroupTasks = "cgroup.tasks"
}

/// A change of one bdi knob seen between two samples.
public struct BdiLimitChange: Sendable, Equatable {
    public var timeNs: Int64
    public var knob: String
    public var from: Double?
    public var to: Double?
}

extension RunData {
    /// Every change of max_ratio (percent, from max_ratio_fine when
    /// sampled) and strict_limit between consecutive samples, the first
    /// sample against the setting recorded at the start (what the kernel
    /// gave the mount). Not max_bytes: the kernel derives it from max_ratio
    /// and the machine's dirty limit, so it moves with free memory.
    public var bdiLimitChanges: [BdiLimitChange] {
        var out: [BdiLimitChange] = []
        let fine = samples.contains { $0[Metric.bdiMaxRatioFine] != nil }
        for (knob, metric, setting, scale) in [("max_ratio", fine ? Metric.bdiMaxRatioFine : Metric.bdiMaxRatio, SettingKey.bdiMaxRatio, fine ? 10000.0 : 1),
                                               ("strict_limit", Metric.bdiStrictLimit, SettingKey.bdiStrictLimit, 1)] {
            var last = settings.first { $0.key == setting }.flatMap { Double($0.value) }
            for s in samples {
                guard let v = s[metric].map({ $0 / scale }) else { continue }
                if let l = last, l != v { out.append(BdiLimitChange(timeNs: s.timeNs, knob: knob, from: l, to: v)) }
                last = v
            }
        }
        // In time order; knobs changed at one sample keep the order above.
        return out.enumerated().sorted { ($0.element.timeNs, $0.offset) < ($1.element.timeNs, $1.offset) }.map(\.element)
    }

    /// "max_ratio=1 strict_limit=1 max_bytes=…", the values at the start, then
    /// each change: "; max_ratio 1→100 at 0.0 s".
    func bdiLimitsText(prefix: Bool) -> String {
        let parts = [("max_ratio", SettingKey.bdiMaxRatio), ("strict_limit", SettingKey.bdiStrictLimit), ("max_bytes", SettingKey.bdiMaxBytes)]
            .compactMap { name, key in settings.first { $0.key == key }.map { "\(name)=\($0.value)" } }
        guard !parts.isEmpty else { return "bdi settings unknown" }
        var text = (prefix ? "bdi " : "") + parts.joined(separator: " ")
        let changes = bdiLimitChanges
        if !changes.isEmpty {
            text += "; changed: " + changes.prefix(6).map {
                "\($0.knob) \($0.from.map(shortNumber) ?? "?")→\($0.to.map(shortNumber) ?? "?") at \(runTime(self, $0.timeNs, decimals: 1))"
            }.joined(separator: ", ") + (changes.count > 6 ? " (\(changes.count) changes)" : "")
        }
        return text
    }
}

/// 100, or 44.62 (a ratio the kernel derived from max_bytes).
func shortNumber(_ v: Double) -> String { v == v.rounded() ? formatNumber(v) : formatFixed(v, 2) }

// MARK: - reclaim throttling

/// `vmscan:mm_vmscan_throttled`: a task slept in reclaim_throttle().
/// "nid=0 usec_timeout=100000 usect_delayed=100000 reason=VMSCAN_THROTTLE_WRITEBACK"
/// (the kernel's format says "usect_delayed").
public struct ReclaimThrottle: Sendable, Equatable {
    public var task: String
    public var pid: Int32
    public var timeNs: Int64
    /// How long it slept (µs).
    public var delayedUs: Int64
    public var timeoutUs: Int64?
    /// "writeback", "isolated", "noprogress", "congested" (lower case, without the prefix).
    public var reason: String

    public init?(_ e: TraceEvent) {
        guard case .vmscanThrottled(let kv) = e.payload,
              let d = kv.int("usect_delayed") ?? kv.int("usec_delayed") else { return nil }
        task = e.task; pid = e.pid; timeNs = e.timeNs; delayedUs = d; timeoutUs = kv.int("usec_timeout")
        var r = (kv["reason"] ?? "?").lowercased()
        if r.hasPrefix("vmscan_throttle_") { r.removeFirst("vmscan_throttle_".count) }
        reason = r
    }
}

// MARK: - what happened to the writer

/// What the memory scenario's one line says.
public enum WriterVerdict: Sendable, Equatable {
    case oomKilled(kills: Int64)
    /// Seconds slept in reclaim_throttle, by reason (largest first).
    case throttledInReclaim(seconds: Double, byReason: [(String, Double)], alsoBdiSeconds: Double)
    /// Seconds paused in balance_dirty_pages and the peak of the mount's in-flight pages.
    case throttledByBdi(seconds: Double, peakInFlightBytes: Double?, alsoReclaimSeconds: Double)
    case notThrottled

    public static func == (a: WriterVerdict, b: WriterVerdict) -> Bool { a.text == b.text }

    /// "writer: throttled by the bdi limit (47.0 MiB in flight) for 21.3 s"
    public var text: String {
        func s(_ v: Double) -> String { formatFixed(v, 1) + " s" }
        switch self {
        case .oomKilled(let n):
            return "writer: OOM-killed" + (n > 1 ? " (\(n) kills in its cgroup)" : "")
        case .throttledInReclaim(let secs, let reasons, let bdi):
            return "writer: throttled in reclaim for \(s(secs))"
                + (reasons.isEmpty ? "" : " (" + reasons.map { "\($0.0) \(s($0.1))" }.joined(separator: ", ") + ")")
                + (bdi > 0 ? ", and \(s(bdi)) in balance_dirty_pages" : "") + "; not OOM-killed"
        case .throttledByBdi(let secs, let peak, let reclaim):
            return "writer: throttled by the bdi limit" + (peak.map { " (\(formatMiB($0)) in flight)" } ?? "")
                + " for \(s(secs)) in balance_dirty_pages" + (reclaim > 0 ? ", and \(s(reclaim)) in reclaim" : "")
        case .notThrottled:
            return "writer: not throttled"
        }
    }
}

extension RunData {
    /// Thread ids of the workload: those seen in its cgroup, else its main process.
    public var workloadTasks: Set<Int32> {
        var out = Set((setting(SettingKey.cgroupTasks) ?? "").split(separator: " ").compactMap { Int32($0) })
        for p in processStates where p.state.role == "workload" { out.insert(p.state.pid) }
        return out
    }

    /// The workload's reclaim_throttle sleeps (all of the machine's when its tasks are unknown).
    public var workloadReclaimThrottles: [ReclaimThrottle] { workloadReclaimThrottles(from: .min, to: .max) }

    func workloadReclaimThrottles(from: Int64, to: Int64) -> [ReclaimThrottle] {
        let all = traceEvents.filter { $0.timeNs >= from && $0.timeNs <= to }.compactMap(ReclaimThrottle.init)
        let tasks = workloadTasks
        return tasks.isEmpty ? all : all.filter { tasks.contains($0.pid) }
    }

    /// How many OOM kills the workload's cgroup counted (else the machine's
    /// vm.oom_kill), from first to last sample.
    public var oomKills: Int64 { oomKills(from: .min, to: .max) }

    func oomKills(from: Int64, to: Int64) -> Int64 {
        for key in [Metric.cgEvent("oom_kill"), Metric.oomKill] {
            let v = samples.filter { $0.timeNs >= from && $0.timeNs <= to }.compactMap { $0[key] }
            if let first = v.first, let last = v.max() { return Int64(last - first) }
        }
        return 0
    }

    /// The one line: OOM-killed, throttled in reclaim, throttled by the bdi
    /// limit, or not throttled. Throttling under 0.1 s counts as none.
    public var writerVerdict: WriterVerdict { writerVerdict(from: .min, to: .max) }

    /// The same, for what happened between two times (a stall window).
    public func writerVerdict(from: Int64, to: Int64) -> WriterVerdict {
        let kills = oomKills(from: from, to: to)
        let killed9 = workload.status?.contains("signal 9") == true
        if kills > 0 && (killed9 || workload.status == nil) { return .oomKilled(kills: kills) }
        var byReason: [String: Double] = [:]
        for t in workloadReclaimThrottles(from: from, to: to) { byReason[t.reason, default: 0] += Double(t.delayedUs) / 1e6 }
        let reclaim = byReason.values.reduce(0, +)
        let tasks = workloadTasks
        let pauses = traceEvents.filter { $0.timeNs >= from && $0.timeNs <= to && (tasks.isEmpty || tasks.contains($0.pid)) }
            .filter { ($0.balanceDirtyPagesPauseMs ?? 0) > 0 }
        let bdi = pauses.compactMap(\.balanceDirtyPagesPauseMs).reduce(0, +)
        let bdiSeconds = Double(bdi) / 1e3
        let threshold = 0.1
        if reclaim >= threshold && reclaim >= bdiSeconds {
            return .throttledInReclaim(seconds: reclaim, byReason: byReason.sorted { $0.value > $1.value }.map { ($0.key, $0.value) },
                                       alsoBdiSeconds: bdiSeconds >= threshold ? bdiSeconds : 0)
        }
        if bdiSeconds >= threshold {
            // What the mount had in flight while the writer paused: the sample before each pause.
            let inFlight = pauses.compactMap { p in
                samples.last { $0.timeNs <= p.timeNs }.flatMap { s in s[Metric.bdiReclaimable].flatMap { r in s[Metric.bdiWriteback].map { r + $0 } } }
            }.max()
            return .throttledByBdi(seconds: bdiSeconds, peakInFlightBytes: inFlight,
                                   alsoReclaimSeconds: reclaim >= threshold ? reclaim : 0)
        }
        return .notThrottled
    }

    /// True when the run had a memory cgroup (its samples) or reclaim throttling to show.
    var hasMemoryScenario: Bool {
        samples.contains { $0[Metric.cgCurrent] != nil } || traceEvents.contains { ReclaimThrottle($0) != nil }
    }

    /// The summary's lines about memory: the verdict, the cgroup's peak and
    /// end, its events. Empty when the run had no cgroup and no throttling.
    public var memorySummaryLines: [String] {
        guard hasMemoryScenario || !bdiLimitChanges.isEmpty else { return [] }
        var out = [writerVerdict.text]
        // Each stall on its own: a run may stall more than once, under different limits.
        let windows = stallWindows(self)
        if windows.count > 1 || (windows.count == 1 && !bdiLimitChanges.isEmpty) {
            for w in windows {
                out.append("during '\(w.line)' (\(runTime(self, w.from, decimals: 1))–\(runTime(self, w.to, decimals: 1))): "
                    + writerVerdict(from: w.from, to: w.to).text)
            }
        }
        let cg = samples.filter { $0[Metric.cgCurrent] != nil }
        if let last = cg.last {
            func top(_ k: String) -> String { cg.compactMap { $0[k] }.max().map(formatMiB) ?? "n/a" }
            func end(_ k: String) -> String { last[k].map(formatMiB) ?? "n/a" }
            out.append("cgroup memory: peak \(top(Metric.cgCurrent))" + (last[Metric.cgMax].map { " of its \(formatMiB($0)) limit" } ?? " (no limit)")
                + ", peak file_dirty \(top(Metric.cgDirty)), file_writeback \(top(Metric.cgWriteback))"
                + (cg.compactMap { s in s[Metric.cgDirty].flatMap { d in s[Metric.cgWriteback].map { d + $0 } } }.max().map { " (together \(formatMiB($0)))" } ?? "")
                + ", file \(top(Metric.cgFile))")
            out.append("cgroup memory at the end: \(end(Metric.cgCurrent)), file_dirty \(end(Metric.cgDirty)), file_writeback \(end(Metric.cgWriteback))")
            let events = Metric.cgEventNames.compactMap { name -> String? in
                let v = cg.compactMap { $0[Metric.cgEvent(name)] }
                guard let first = v.first, let hi = v.max() else { return nil }
                return "\(name) \(formatNumber(hi - first))"
            }
            if !events.isEmpty { out.append("cgroup memory events: " + events.joined(separator: ", ")) }
        }
        let all = traceEvents.compactMap(ReclaimThrottle.init)
        if !all.isEmpty {
            let mine = workloadReclaimThrottles
            out.append("reclaim_throttle (vmscan:mm_vmscan_throttled): \(all.count) sleeps on the machine, "
                + "\(formatFixed(Double(all.reduce(0) { $0 + $1.delayedUs }) / 1e6, 1)) s; the workload's: \(mine.count), "
                + "\(formatFixed(Double(mine.reduce(0) { $0 + $1.delayedUs }) / 1e6, 1)) s")
        }
        return out
    }
}

// MARK: - charts

/// The memory scenario's charts: the cgroup's memory against its limit
/// (events as markers), and reclaim_throttle sleeps by reason.
func memoryCharts(_ run: RunData, xRange xr: ClosedRange<Double>, markers: [ChartMarker]) -> [BuiltChart] {
    guard run.hasMemoryScenario else { return [] }
    let start = run.startNs
    func sec(_ t: Int64) -> Double { Double(t - start) / 1e9 }
    let mib = 1.0 / 1048576
    func series(_ name: String, _ color: Int, _ key: String) -> ChartSeries {
        ChartSeries(name: name, color: Report.colors[color], points: run.samples.map { ChartPoint(x: sec($0.timeNs), y: $0[key].map { $0 * mib }) })
    }
    // A marker where an event counter starts to rise ("high" and "max" rise
    // at every charge while the cgroup is full: one marker per stretch),
    // and at each rise of "oom" and "oom_kill".
    var eventMarkers: [ChartMarker] = []
    for name in Metric.cgEventNames {
        var prev: Double?
        var rising = false
        for s in run.samples {
            guard let v = s[Metric.cgEvent(name)] else { continue }
            let rises = prev.map { v > $0 } ?? false
            if rises && (!rising || name.hasPrefix("oom")) { eventMarkers.append(ChartMarker(x: sec(s.timeNs), label: "cgroup " + name)) }
            rising = rises
            prev = v
        }
    }
    var out: [BuiltChart] = []
    if run.samples.contains(where: { $0[Metric.cgCurrent] != nil }) {
        let version = run.settings.first { $0.key == "cgroup" }?.value.contains("(v1)") == true
        out.append(BuiltChart(spec: ChartSpec(title: "The workload's memory cgroup", yUnit: "MiB", series: [
            series(version ? "usage_in_bytes" : "memory.current", 0, Metric.cgCurrent),
            series(version ? "limit_in_bytes" : "memory.max", 4, Metric.cgMax),
            series("file", 2, Metric.cgFile),
            series("file_dirty", 5, Metric.cgDirty),
            series("file_writeback", 1, Metric.cgWriteback),
        ], markers: markers.filter { $0.kind == .planStep } + eventMarkers, xRange: xr),
            note: eventMarkers.isEmpty ? "No memory events (high, max, oom, oom_kill) in the cgroup." : "Red markers: the cgroup's memory events (v1 counts only max, as failcnt, and oom_kill)."))
    }
    let throttles = run.traceEvents.compactMap(ReclaimThrottle.init)
    let tasks = run.workloadTasks
    let mine = tasks.isEmpty ? throttles : throttles.filter { tasks.contains($0.pid) }
    let others = tasks.isEmpty ? [] : throttles.filter { !tasks.contains($0.pid) }
    func stems(_ name: String, _ color: Int, _ list: [ReclaimThrottle]) -> ChartSeries {
        ChartSeries(name: name, color: Report.colors[color % Report.colors.count],
                    points: list.map { ChartPoint(x: sec($0.timeNs), y: Double($0.delayedUs) / 1e3) }, style: .stems)
    }
    let reasons = Array(Set(mine.map(\.reason))).sorted()
    out.append(BuiltChart(spec: ChartSpec(title: "Reclaim throttling (vmscan:mm_vmscan_throttled), by reason", yUnit: "ms slept",
        series: reasons.enumerated().map { i, r in stems(r + (tasks.isEmpty ? "" : " (workload)"), i, mine.filter { $0.reason == r }) }
            + (others.isEmpty ? [] : [stems("other tasks", 4, others)]),
        markers: markers, xRange: xr),
        note: !run.traceAvailable ? "tracefs not available: no vmscan events." : (throttles.isEmpty ? "No task slept in reclaim_throttle." : nil)))
    return out
}
