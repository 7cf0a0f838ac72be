// Everything a report is drawn from. The Monitor module fills it live, or
// rebuilds it from a run folder with `RunData.load(samplesJSONL:eventsJSONL:)`.

public struct WorkloadInfo: Sendable, Equatable {
    public var command: String
    public var startNs: Int64?
    public var exitNs: Int64?
    /// Human text: "exited 0", "killed by signal 9"; nil while running.
    public var status: String?
    public var exitCode: Int32?
    public init(command: String = "", startNs: Int64? = nil, exitNs: Int64? = nil, status: String? = nil, exitCode: Int32? = nil) {
        self.command = command; self.startNs = startNs; self.exitNs = exitNs; self.status = status; self.exitCode = exitCode
    }
}

public struct RunData: Sendable {
    /// Shown in the header (well-known keys, see `SettingKey`) and in the
    /// settings table (all of them, in order).
    public var settings: [Setting]
    public var samples: [Sample]
    public var injections: [InjectionEvent]
    public var traceEvents: [TraceEvent]
    public var workload: WorkloadInfo
    /// Degradations, in words ("debugfs not mounted: no bdi chart").
    public var notes: [String]
    /// false when tracefs could not be used: the derivation table is then
    /// empty for that reason, and the report says so.
    public var traceAvailable: Bool

    public init(settings: [Setting] = [], samples: [Sample] = [], injections: [InjectionEvent] = [],
                traceEvents: [TraceEvent] = [], workload: WorkloadInfo = WorkloadInfo(), notes: [String] = [],
                traceAvailable: Bool = true) {
        self.settings = settings; self.samples = samples; self.injections = injections
        self.traceEvents = traceEvents; self.workload = workload; self.notes = notes
        self.traceAvailable = traceAvailable
    }

    /// The last value of a setting.
    public func setting(_ key: String) -> String? { settings.last { $0.key == key }?.value }

    /// Rules as (id, text), from settings "rule.<id>".
    public var rules: [Setting] {
        settings.filter { $0.key.hasPrefix(SettingKey.rulePrefix) }
            .map { Setting(String($0.key.dropFirst(SettingKey.rulePrefix.count)), $0.value) }
    }

    public var mountDevice: DeviceID? { setting(SettingKey.mountDevice).flatMap { DeviceID($0) } }

    /// Time zero of the charts: the workload start, else the first thing seen.
    public var startNs: Int64 {
        if let s = workload.startNs { return s }
        let firsts = [samples.first?.timeNs, injections.map(\.timeNs).min(), traceEvents.map(\.timeNs).min()].compactMap { $0 }
        return firsts.min() ?? 0
    }

    public var endNs: Int64 {
        let lasts = [workload.exitNs, samples.last?.timeNs, injections.map(\.timeNs).max()].compactMap { $0 }
        return max(lasts.max() ?? startNs, startNs)
    }

    public var durationSeconds: Double { Double(endNs - startNs) / 1e9 }

    /// Rebuilds a run from its files. Unreadable lines become a note rather
    /// than an error, so a run cut short still gives a report. A setting
    /// "trace.available" = "0"/"false" marks tracing as unavailable.
    public static func load(samplesJSONL: String, eventsJSONL: String) -> RunData {
        var run = RunData()
        let (samples, badSamples) = SampleSeries.parseJSONLines(samplesJSONL)
        run.samples = samples.sorted { $0.timeNs < $1.timeNs }
        var bad = 0
        for l in lines(eventsJSONL) where !l.allSatisfy({ $0 == " " }) {
            guard let e = EventLog.parseLine(String(l)) else { bad += 1; continue }
            run.apply(e)
        }
        if badSamples > 0 { run.notes.append("\(badSamples) line(s) of samples.jsonl could not be read") }
        if bad > 0 { run.notes.append("\(bad) line(s) of events.jsonl could not be read") }
        return run
    }

    /// Adds one event (what `load` does per line; the Monitor may call it live).
    public mutating func apply(_ e: RunEvent) {
        switch e {
        case .setting(let s):
            settings.append(s)
            if s.key == SettingKey.traceAvailable { traceAvailable = !["0", "false", "no"].contains(s.value.lowercased()) }
        case .workloadStart(let t, let cmd): workload.startNs = t; workload.command = cmd
        case .workloadExit(let t, let status, let code): workload.exitNs = t; workload.status = status; workload.exitCode = code
        case .injection(let i): injections.append(i)
        case .trace(let t): traceEvents.append(t)
        case .note(_, let text): notes.append(text)
        }
    }
}

extension SettingKey {
    /// "1" or "0": whether tracefs events were collected.
    public static let traceAvailable = "trace.available"
}
