// Events of a run and their JSON-lines form (events.jsonl). One object per
// line, always with "kind". Written by hand (stable key order) and read with
// FaultRules' JSON reader; the injection lines are FaultRules' event codec.
//
//   {"kind":"setting","key":"kernel.release","value":"6.18.0"}
//   {"kind":"workload_start","time_ns":1,"command":"python3 w.py"}
//   {"kind":"injection","time_ns":2,"rule":"r1","action":"fail","op":"writeback","path":"f","inode":16220322,...}
//       (the rest of the object is FaultRules.InjectionEvent.jsonLine())
//   {"kind":"control","time_ns":2,"line":"stall writeback","result":"ok"}
//   {"kind":"trace","time_ns":3,"line":"python3-20466 [000] ... file_check_and_advance_wb_err: ..."}
//   {"kind":"note","text":"tracefs not available"}
//   {"kind":"workload_exit","time_ns":4,"status":"exited 0","code":0}

import FaultRules

// The injected-fault event is FaultRules' `InjectionEvent`, with its codec
// (`jsonLine()`, `decode`); this file adds what the report needs of it.

extension InjectionEvent {
    /// True for an injected error (a "fail" with an errno): the events the
    /// derivation table follows. Stalls, delays, releases are not errors.
    public var isError: Bool { errno != 0 && (action == .fail || action == .short || action == .drop) }

    /// Short text for chart markers: "r1 fail EIO", "r2 stall", "release".
    public var markerLabel: String {
        var parts = [ruleID.isEmpty ? action.name : ruleID]
        if !ruleID.isEmpty, action != .fail { parts.append(action.name) }
        if errno != 0 { parts.append(errnoLabel(errno)) }
        return parts.joined(separator: " ")
    }

    public var pathText: String { path ?? "?" }
}

public struct Setting: Sendable, Equatable {
    public var key: String
    public var value: String
    public init(_ key: String, _ value: String) { self.key = key; self.value = value }
}

/// Well-known setting keys the report header reads.
public enum SettingKey {
    public static let kernelRelease = "kernel.release"
    /// "0:39"
    public static let mountDevice = "mount.dev"
    public static let mountPoint = "mount.point"
    public static let bdiMaxRatio = "bdi.max_ratio"
    public static let bdiMinRatio = "bdi.min_ratio"
    public static let bdiMaxBytes = "bdi.max_bytes"
    public static let bdiStrictLimit = "bdi.strict_limit"
    public static let sampleIntervalMs = "sample.interval_ms"
    /// Settings whose key starts with this are rules ("rule.r1" = its text).
    public static let rulePrefix = "rule."
}

public enum RunEvent: Sendable, Equatable {
    case setting(Setting)
    case workloadStart(timeNs: Int64, command: String)
    /// `status` is human text ("exited 1", "killed by signal 9").
    case workloadExit(timeNs: Int64, status: String, code: Int32?)
    case injection(InjectionEvent)
    case trace(TraceEvent)
    case note(timeNs: Int64?, text: String)
    /// A line the runner wrote to the mount's control file (its plan), with
    /// the outcome ("ok" or the error).
    case control(timeNs: Int64, line: String, result: String)
    /// A watched process changed state or wchan (written on change only).
    case process(timeNs: Int64, ProcessState)
    /// The files on the mount a process has open (written on change; an
    /// empty list when it closed them all).
    case openFiles(OpenFiles)
}

/// A watched process as seen at one sample: state letter and the kernel
/// function it sleeps in ("balance_dirty_pages", "folio_wait_writeback").
public struct ProcessState: Sendable, Equatable {
    public var role: String
    public var pid: Int32
    public var comm: String
    public var state: String
    public var wchan: String?
    public init(role: String, pid: Int32, comm: String, state: String, wchan: String?) {
        self.role = role; self.pid = pid; self.comm = comm; self.state = state; self.wchan = wchan
    }
    /// What changes are tracked on: state and wchan.
    public func sameAs(_ o: ProcessState) -> Bool { state == o.state && wchan == o.wchan && pid == o.pid }
}

public enum EventLog {
    public static func jsonLine(_ e: RunEvent) -> String {
        func s(_ k: String, _ v: String) -> String { ",\"\(k)\":" + jsonString(v) }
        switch e {
        case .setting(let st):
            return "{\"kind\":\"setting\"" + s("key", st.key) + s("value", st.value) + "}"
        case .workloadStart(let t, let cmd):
            return "{\"kind\":\"workload_start\",\"time_ns\":\(t)" + s("command", cmd) + "}"
        case .workloadExit(let t, let status, let code):
            return "{\"kind\":\"workload_exit\",\"time_ns\":\(t)" + s("status", status)
                + (code.map { ",\"code\":\($0)" } ?? "") + "}"
        case .injection(let i):
            // The fault layer's own line, with "kind" in front.
            var line = i.jsonLine()
            while line.hasSuffix("\n") { line.removeLast() }
            return "{\"kind\":\"injection\"," + line.dropFirst()
        case .control(let t, let line, let result):
            return "{\"kind\":\"control\",\"time_ns\":\(t)" + s("line", line) + s("result", result) + "}"
        case .process(let t, let p):
            return "{\"kind\":\"process\",\"time_ns\":\(t)" + s("role", p.role) + ",\"pid\":\(p.pid)" + s("comm", p.comm)
                + s("state", p.state) + (p.wchan.map { s("wchan", $0) } ?? "") + "}"
        case .trace(let t):
            return "{\"kind\":\"trace\",\"time_ns\":\(t.timeNs)" + s("line", t.raw) + "}"
        case .openFiles(let o):
            return o.jsonLine()
        case .note(let t, let text):
            return "{\"kind\":\"note\"" + (t.map { ",\"time_ns\":\($0)" } ?? "") + s("text", text) + "}"
        }
    }

    /// Reads one line written by `jsonLine`; nil if it is not one.
    public static func parseLine(_ line: String) -> RunEvent? {
        guard let o = try? parseJSON(line), let kind = o["kind"]?.string else { return nil }
        let t = o["time_ns"]?.int64
        switch kind {
        case "setting":
            guard let k = o["key"]?.string, let v = o["value"]?.string else { return nil }
            return .setting(Setting(k, v))
        case "workload_start":
            guard let t else { return nil }
            return .workloadStart(timeNs: t, command: o["command"]?.string ?? "")
        case "workload_exit":
            guard let t else { return nil }
            return .workloadExit(timeNs: t, status: o["status"]?.string ?? "",
                                 code: o["code"]?.integer(as: Int32.self))
        case "injection":
            return (try? InjectionEvent(json: o)).map { .injection($0) }
        case "control":
            guard let t, let line = o["line"]?.string else { return nil }
            return .control(timeNs: t, line: line, result: o["result"]?.string ?? "")
        case "process":
            guard let t, let pid = o["pid"]?.integer(as: Int32.self) else { return nil }
            return .process(timeNs: t, ProcessState(role: o["role"]?.string ?? "", pid: pid,
                                                    comm: o["comm"]?.string ?? "", state: o["state"]?.string ?? "?",
                                                    wchan: o["wchan"]?.string))
        case "trace":
            guard let line = o["line"]?.string, var ev = TraceParser.parse(line) else { return nil }
            if let t { ev.timeNs = t }   // the writer may have shifted it onto the run clock
            return .trace(ev)
        case "open_files":
            return OpenFiles(json: o).map { .openFiles($0) }
        case "note":
            guard let text = o["text"]?.string else { return nil }
            return .note(timeNs: t, text: text)
        default:
            return nil
        }
    }
}
