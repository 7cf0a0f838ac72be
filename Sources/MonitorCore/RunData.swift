import FaultRules

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
    /// The runner's plan as applied: lines written to the control file.
    public var controls: [ControlStep] = []
    /// State/wchan changes of watched processes, in time order.
    public var processStates: [(timeNs: Int64, state: ProcessState)] = []
    /// The end of the workload's stdout and stderr (see `WorkloadOutput`).
    public var workloadOutput: [WorkloadOutput] = []
    /// Sampled /proc/PID/fd of processes with files on the mount, in time order.
    public var openFiles: [OpenFiles] = []

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
        let lasts = [workload.exitNs, samples.last?.timeNs, injections.map(\.timeNs).max(),
                     controls.map(\.timeNs).max()].compactMap { $0 }
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
        case .control(let t, let line, let result): controls.append(ControlStep(timeNs: t, line: line, result: result))
        case .process(let t, let p): processStates.append((t, p))
        case .openFiles(let o): openFiles.append(o)
        }
    }
}

extension SettingKey {
    /// "1" or "0": whether tracefs events were collected.
    public static let traceAvailable = "trace.available"
}

/// One line of the plan, as the runner applied it.
public struct ControlStep: Sendable, Equatable {
    public var timeNs: Int64
    public var line: String
    /// "ok", or what went wrong writing it.
    public var result: String
    public init(timeNs: Int64, line: String, result: String) { self.timeNs = timeNs; self.line = line; self.result = result }
}

extension RunData {
    /// For one role, the time spent per (state, wchan), longest first: each
    /// change lasts until the next change of that process, the last one
    /// until the run's end.
    public func timeInStates(role: String) -> [(state: String, wchan: String?, seconds: Double)] {
        let list = processStates.filter { $0.state.role == role }.sorted { $0.timeNs < $1.timeNs }
        var total: [String: (String, String?, Int64)] = [:]
        for (i, e) in list.enumerated() {
            var end = i + 1 < list.count ? list[i + 1].timeNs : endNs
            if let exit = workload.exitNs, role == "workload" { end = min(end, exit) }
            let key = e.state.state + "|" + (e.state.wchan ?? "")
            let prev = total[key]?.2 ?? 0
            total[key] = (e.state.state, e.state.wchan, prev + max(0, end - e.timeNs))
        }
        return total.values.map { ($0.0, $0.1, Double($0.2) / 1e9) }.sorted { $0.seconds > $1.seconds }
    }
}

extension SettingKey {
    /// "run" (default) or "monitor": `faultfs monitor` records a mount and
    /// runs no workload, and its report says so.
    public static let runKind = "run.kind"
}

extension RunData {
    /// True for a `faultfs monitor` recording (no workload of its own).
    public var isMonitorOnly: Bool { setting(SettingKey.runKind) == "monitor" }
}

/// The end of what the workload printed on one stream, for the report.
/// The whole output is in the run folder.
public struct WorkloadOutput: Sendable, Equatable {
    /// "stdout" or "stderr".
    public var stream: String
    /// The file in the run folder that holds all of it ("workload.out").
    public var file: String
    public var lastLines: [String]
    public var totalLines: Int

    /// The last `keep` lines of `text` (the end of the output, whose whole
    /// has `totalLines` lines; default: those of `text`). Control characters
    /// other than tab become U+FFFD, and each line is cut to 300 characters.
    public static func tail(of text: String, stream: String, file: String, keep: Int = 20, totalLines: Int? = nil) -> WorkloadOutput {
        // By scalars: "\r\n" is one Character.
        var lines = text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).map { $0.last == "\r" ? $0.dropLast() : $0 }
        if lines.last?.isEmpty == true { lines.removeLast() }
        let shown = lines.suffix(keep).map { line -> String in
            var out = String(String.UnicodeScalarView(line.map { $0.value < 0x20 && $0 != "\t" || $0.value == 0x7f ? "\u{FFFD}" : $0 }))
            if out.count > 300 { out = String(out.prefix(300)) + "…" }
            return out
        }
        return WorkloadOutput(stream: stream, file: file, lastLines: shown, totalLines: totalLines ?? lines.count)
    }
}

extension RunData {
    /// The workload's stdout and stderr, filled by whoever reads the run
    /// folder (`faultfs report`); empty when not captured.
    public static let workloadStdoutFile = "workload.out"
    public static let workloadStderrFile = "workload.err"
}
