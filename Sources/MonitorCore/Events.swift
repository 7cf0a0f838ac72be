// Events of a run and their JSON-lines form (events.jsonl). One object per
// line, always with "kind". Writing is hand-rolled (stable key order, no
// Foundation); reading uses JSONSerialization.
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
import Foundation

// The injected-fault event is FaultRules' `InjectionEvent` (the fault layer
// writes it with `jsonLine()`); this file only adds its parser.

extension InjectionEvent {
    /// Parses one line written by `InjectionEvent.jsonLine()` (also the
    /// "injection" lines of events.jsonl, which carry an extra "kind").
    /// nil when the line is not such an object.
    public static func parse(jsonLine line: String) -> InjectionEvent? {
        guard let o = parseJSONObject(line) else { return nil }
        return parse(object: o)
    }

    static func parse(object o: [String: Any]) -> InjectionEvent? {
        guard let t = jsonInt64(o["time_ns"]), let opName = o["op"] as? String,
              let op = FaultOp.allCases.first(where: { $0.name == opName }) else { return nil }
        return InjectionEvent(timeNs: t, ruleID: o["rule"] as? String ?? "", action: o["action"] as? String ?? "fail",
                              op: op, path: o["path"] as? String, inode: UInt64(bitPattern: jsonInt64(o["inode"]) ?? 0),
                              offset: jsonInt64(o["offset"]) ?? -1, length: jsonInt64(o["length"]) ?? 0,
                              errno: abs(Int32(truncatingIfNeeded: jsonInt64(o["errno"]) ?? 0)),
                              pid: Int32(truncatingIfNeeded: jsonInt64(o["pid"]) ?? 0), comm: o["comm"] as? String,
                              writeback: o["writeback"] as? Bool ?? false)
    }

    /// True for an injected error (a "fail" with an errno): the events the
    /// derivation table follows. Stalls, delays, releases are not errors.
    public var isError: Bool { errno != 0 && (action == "fail" || action == "short" || action == "drop") }

    /// Short text for chart markers: "r1 fail EIO", "r2 stall", "release".
    public var markerLabel: String {
        var parts = [ruleID.isEmpty ? action : ruleID]
        if !ruleID.isEmpty, action != "fail" { parts.append(action) }
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
        case .note(let t, let text):
            return "{\"kind\":\"note\"" + (t.map { ",\"time_ns\":\($0)" } ?? "") + s("text", text) + "}"
        }
    }

    /// Reads one line written by `jsonLine`; nil if it is not one.
    public static func parseLine(_ line: String) -> RunEvent? {
        guard let o = parseJSONObject(line), let kind = o["kind"] as? String else { return nil }
        let t = jsonInt64(o["time_ns"])
        switch kind {
        case "setting":
            guard let k = o["key"] as? String, let v = o["value"] as? String else { return nil }
            return .setting(Setting(k, v))
        case "workload_start":
            guard let t else { return nil }
            return .workloadStart(timeNs: t, command: o["command"] as? String ?? "")
        case "workload_exit":
            guard let t else { return nil }
            return .workloadExit(timeNs: t, status: o["status"] as? String ?? "",
                                 code: jsonInt64(o["code"]).map { Int32(truncatingIfNeeded: $0) })
        case "injection":
            return InjectionEvent.parse(object: o).map { .injection($0) }
        case "control":
            guard let t, let line = o["line"] as? String else { return nil }
            return .control(timeNs: t, line: line, result: o["result"] as? String ?? "")
        case "process":
            guard let t, let pid = jsonInt64(o["pid"]) else { return nil }
            return .process(timeNs: t, ProcessState(role: o["role"] as? String ?? "", pid: Int32(truncatingIfNeeded: pid),
                                                    comm: o["comm"] as? String ?? "", state: o["state"] as? String ?? "?",
                                                    wchan: o["wchan"] as? String))
        case "trace":
            guard let line = o["line"] as? String, var ev = TraceParser.parse(line) else { return nil }
            if let t { ev.timeNs = t }   // the writer may have shifted it onto the run clock
            return .trace(ev)
        case "note":
            guard let text = o["text"] as? String else { return nil }
            return .note(timeNs: t, text: text)
        default:
            return nil
        }
    }
}

// MARK: - JSON reading helpers

func parseJSONObject(_ line: String) -> [String: Any]? {
    guard let data = line.data(using: .utf8),
          let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
    return obj
}

func jsonInt64(_ v: Any?) -> Int64? {
    guard let v, !(v is NSNull) else { return nil }
    if let i = v as? Int64 { return i }
    if let i = v as? Int { return Int64(i) }
    if let n = v as? NSNumber { return n.int64Value }
    return nil
}

func jsonDouble(_ v: Any?) -> Double? {
    guard let v, !(v is NSNull) else { return nil }
    if let d = v as? Double { return d }
    if let i = v as? Int { return Double(i) }
    if let n = v as? NSNumber { return n.doubleValue }
    return nil
}
