// Events of a run and their JSON-lines form (events.jsonl). One object per
// line, always with "kind". Writing is hand-rolled (stable key order, no
// Foundation); reading uses JSONSerialization.
//
//   {"kind":"setting","key":"kernel.release","value":"6.18.0"}
//   {"kind":"workload_start","time_ns":1,"command":"python3 w.py"}
//   {"kind":"injection","time_ns":2,"rule":"r1","op":"writeback","path":"/f","inode":16220322,"errno":5}
//   {"kind":"trace","time_ns":3,"line":"python3-20466 [000] ... file_check_and_advance_wb_err: ..."}
//   {"kind":"note","text":"tracefs not available"}
//   {"kind":"workload_exit","time_ns":4,"status":"exited 0","code":0}

import Foundation

/// One fault the fault layer injected.
public struct InjectionEvent: Sendable, Equatable {
    public var timeNs: Int64
    public var ruleID: String
    /// The FUSE operation failed, e.g. "writeback" (a FUSE_WRITE with
    /// FUSE_WRITE_CACHE), "write", "fsync", "flush".
    public var op: String
    public var path: String
    /// The FUSE node id, which is the kernel's i_ino for a FUSE mount.
    public var inode: UInt64
    /// Positive errno (5 = EIO) replied to the kernel.
    public var errno: Int32

    public init(timeNs: Int64, ruleID: String, op: String, path: String, inode: UInt64, errno: Int32) {
        self.timeNs = timeNs; self.ruleID = ruleID; self.op = op; self.path = path
        self.inode = inode; self.errno = abs(errno)
    }
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
}

public enum EventLog {
    public static func jsonLine(_ e: RunEvent) -> String {
        func s(_ k: String, _ v: String) -> String { ",\"\(k)\":\"" + jsonEscape(v) + "\"" }
        switch e {
        case .setting(let st):
            return "{\"kind\":\"setting\"" + s("key", st.key) + s("value", st.value) + "}"
        case .workloadStart(let t, let cmd):
            return "{\"kind\":\"workload_start\",\"time_ns\":\(t)" + s("command", cmd) + "}"
        case .workloadExit(let t, let status, let code):
            return "{\"kind\":\"workload_exit\",\"time_ns\":\(t)" + s("status", status)
                + (code.map { ",\"code\":\($0)" } ?? "") + "}"
        case .injection(let i):
            return "{\"kind\":\"injection\",\"time_ns\":\(i.timeNs)" + s("rule", i.ruleID) + s("op", i.op)
                + s("path", i.path) + ",\"inode\":\(i.inode),\"errno\":\(i.errno)}"
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
            guard let t, let ino = jsonInt64(o["inode"]), let e = jsonInt64(o["errno"]) else { return nil }
            return .injection(InjectionEvent(timeNs: t, ruleID: o["rule"] as? String ?? "", op: o["op"] as? String ?? "",
                                             path: o["path"] as? String ?? "", inode: UInt64(bitPattern: ino),
                                             errno: Int32(truncatingIfNeeded: e)))
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
