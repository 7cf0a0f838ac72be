// Parser for tracefs `trace` / `trace_pipe` lines, e.g.
//
//   python3-20466   [000] ...1.  3368.529223: file_check_and_advance_wb_err: file=00000000ba5d258d dev=0:39 ino=0xf780a2 old=0x0 new=0x1005
//
// i.e. "<comm>-<pid> [<cpu>] <flags> <seconds>: <event>: <fields>". The comm
// may contain spaces and '-', so the line is anchored on the "[cpu]" bracket
// and the pid is what follows the *last* '-' before it. The flags column is
// absent when the irq-info option is off; we do not depend on it.

/// Mask of the errno in an errseq_t (MAX_ERRNO) and its "seen" flag.
public let errseqErrnoMask: Int64 = 0xfff
public let errseqSeenFlag: Int64 = 0x1000

/// `filemap:filemap_set_wb_err`: the kernel recorded a writeback error on a
/// mapping. Note: on 6.x the printed `errseq` is the value *returned by*
/// errseq_set(), which is the previous value, so the first error on a fresh
/// mapping prints errseq=0x0 (see Fixtures/trace.txt). Do not rely on it to
/// tell which errno was recorded.
public struct SetWbErr: Sendable, Equatable {
    public var dev: DeviceID
    public var ino: UInt64
    public var errseq: Int64
    /// -(errseq & 0xfff): negative errno, 0 when the printed value had none.
    public var errno: Int32 { -Int32(errseq & errseqErrnoMask) }
}

/// `filemap:file_check_and_advance_wb_err`: an fsync-family call checked the
/// file's error cursor. `old != new` means the caller was told `new & 0xfff`.
public struct CheckAndAdvanceWbErr: Sendable, Equatable {
    /// Hashed `struct file *`: identifies the open file description.
    public var file: String
    public var dev: DeviceID
    public var ino: UInt64
    public var old: Int64
    public var new: Int64
    /// Positive errno the caller received, 0 if none.
    public var reportedErrno: Int32 { reported ? Int32(new & errseqErrnoMask) : 0 }
    /// True when this call returned an error to the process.
    public var reported: Bool { old != new && (new & errseqErrnoMask) != 0 }
    /// The "seen" flag (0x1000) in `new`.
    public var seen: Bool { (new & errseqSeenFlag) != 0 }
}

/// `fuse:fuse_request_end`: "connection 39 req 4 len 16 error -2".
public struct FuseRequestEnd: Sendable, Equatable {
    public var connection: UInt32
    public var req: UInt64
    public var len: Int64
    /// Negative errno from the daemon's reply, 0 for success.
    public var error: Int32
}

/// The generic "key=value" payload of events such as balance_dirty_pages
/// ("bdi 0:39: limit=.. setpoint=.. dirty=.. pause=.. period=.. think=..")
/// and mm_vmscan_throttled. `bdi` is filled from the "bdi 0:39:" prefix.
public struct KeyValueFields: Sendable, Equatable {
    public var values: [String: String]
    public init(_ values: [String: String] = [:]) { self.values = values }
    public subscript(_ key: String) -> String? { values[key] }
    public func int(_ key: String) -> Int64? { values[key].flatMap { Int64($0) } }
}

public enum TracePayload: Sendable, Equatable {
    case setWbErr(SetWbErr)
    case checkAndAdvance(CheckAndAdvanceWbErr)
    case fuseRequestEnd(FuseRequestEnd)
    /// balance_dirty_pages: pause/period/think are in ms, limit/dirty in pages.
    case balanceDirtyPages(KeyValueFields)
    case vmscanThrottled(KeyValueFields)
    /// `syscalls:sys_enter_*`: the call and its file descriptor argument.
    case syscallEnter(SyscallEnter)
    /// `syscalls:sys_exit_*`: the call and what it returned.
    case syscallExit(SyscallExit)
    /// `sched:sched_process_exit`.
    case processExit(ProcessExit)
    /// `fuse:fuse_request_send`, in the task that queued the request.
    case fuseRequestSend(FuseRequestSend)
    /// Any other event (or a known one whose fields did not parse).
    case other
}

public struct TraceEvent: Sendable, Equatable {
    public var task: String
    public var pid: Int32
    public var cpu: Int32
    /// The thread group (process) id, when the instance records it
    /// (option record-tgid: "comm-tid (tgid) [cpu]").
    public var tgid: Int32? = nil
    /// The trace timestamp in ns, on the trace clock (exact, not via Double).
    public var traceTimeNs: Int64
    /// The time on the run's clock. Equal to `traceTimeNs` unless the caller
    /// shifts it (use trace_clock=mono and CLOCK_MONOTONIC samples to keep
    /// them equal).
    public var timeNs: Int64
    public var name: String
    /// The text after "<event>: ".
    public var fieldsText: String
    /// Every "key=value" token of the fields (for unknown events too).
    public var fields: KeyValueFields
    public var payload: TracePayload
    /// The original line, kept so events.jsonl can store it verbatim.
    public var raw: String

    public var seconds: Double { Double(traceTimeNs) / 1e9 }
}

public enum TraceParser {
    /// Parses one line; nil for headers ("# ..."), "LOST EVENTS" lines and
    /// anything that does not look like an event.
    public static func parse(_ line: String) -> TraceEvent? {
        guard !line.hasPrefix("#") else { return nil }
        let chars = Array(line.utf8)
        // Find "[digits]" preceded by whitespace: the CPU column.
        var i = 0, cpuOpen = -1, cpuClose = -1
        while i < chars.count {
            if chars[i] == UInt8(ascii: "["), i > 0, chars[i - 1] == UInt8(ascii: " ") {
                var j = i + 1
                while j < chars.count, chars[j] >= 48, chars[j] <= 57 { j += 1 }
                if j > i + 1, j < chars.count, chars[j] == UInt8(ascii: "]") { cpuOpen = i; cpuClose = j; break }
            }
            i += 1
        }
        guard cpuOpen > 0 else { return nil }
        var head = String(decoding: chars[0..<cpuOpen], as: UTF8.self).trimmingSpaces()
        // record-tgid: "comm-tid (  tgid)" ("(-------)" when unknown).
        var tgid: Int32?
        if head.hasSuffix(")"), let open = head.lastIndex(of: "(") {
            tgid = Int32(head[head.index(after: open)..<head.index(before: head.endIndex)].trimmingSpaces())
            head = String(head[..<open]).trimmingSpaces()
        }
        guard let dash = head.lastIndex(of: "-"), let pid = Int32(head[head.index(after: dash)...]),
              let cpu = Int32(String(decoding: chars[(cpuOpen + 1)..<cpuClose], as: UTF8.self)) else { return nil }
        let task = String(head[..<dash])

        // After the bracket: optional flags, then "<secs>.<frac>:", then " <event>: <fields>".
        let tail = Substring(String(decoding: chars[(cpuClose + 1)...], as: UTF8.self))
        var rest = tail[...]
        var ts: Int64?
        while let tok = nextToken(&rest) {
            if tok.hasSuffix(":"), let t = parseTimestampNs(tok.dropLast()) { ts = t; break }
        }
        guard let ts else { return nil }
        rest = rest.drop(while: { $0 == " " })
        if let call = parseSyscall(rest) {
            return TraceEvent(task: task, pid: pid, cpu: cpu, tgid: tgid, traceTimeNs: ts, timeNs: ts, name: call.name,
                              fieldsText: String(rest), fields: KeyValueFields(), payload: call.payload, raw: line)
        }
        // Event name ends at the first ": " (or at end of line for events with no fields).
        let name: Substring, fieldsText: Substring
        if let r = rest.firstRange(of: ": ") {
            name = rest[..<r.lowerBound]; fieldsText = rest[r.upperBound...]
        } else if rest.hasSuffix(":") {
            name = rest.dropLast(); fieldsText = ""
        } else { return nil }
        guard !name.isEmpty, !name.contains(" ") else { return nil }

        let kv = parseKeyValues(fieldsText)
        let payload = makePayload(name: name, fieldsText: fieldsText, kv: kv)
        return TraceEvent(task: task, pid: pid, cpu: cpu, tgid: tgid, traceTimeNs: ts, timeNs: ts, name: String(name),
                          fieldsText: String(fieldsText), fields: kv, payload: payload, raw: line)
    }

    /// Parses a whole `trace` file or a chunk of `trace_pipe`.
    public static func parseAll(_ text: String) -> [TraceEvent] {
        lines(text).compactMap { parse(String($0)) }
    }

    /// "CPU:1 [LOST 123 EVENTS]" → 123. The Monitor should add a note when
    /// events were lost: the told/never-told table may then be incomplete.
    public static func lostEvents(_ line: String) -> Int? {
        guard let r = line.firstRange(of: "[LOST ") else { return nil }
        let after = line[r.upperBound...]
        return Int(after.prefix(while: { $0.isNumber }))
    }

    /// "3368.511716" → 3368511716000 ns, exactly (no Double rounding).
    static func parseTimestampNs(_ s: Substring) -> Int64? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 2, let secs = Int64(parts[0]) else { return nil }
        var ns = secs * 1_000_000_000
        if parts.count == 2 {
            let frac = parts[1]
            guard !frac.isEmpty, frac.count <= 9, let f = Int64(frac) else { return nil }
            var scale: Int64 = 1
            for _ in 0..<(9 - frac.count) { scale *= 10 }
            ns += f * scale
        }
        return ns
    }

    static func nextToken(_ s: inout Substring) -> Substring? {
        s = s.drop(while: { $0 == " " || $0 == "\t" })
        guard !s.isEmpty else { return nil }
        let end = s.firstIndex(where: { $0 == " " || $0 == "\t" }) ?? s.endIndex
        let tok = s[..<end]
        s = s[end...]
        return tok
    }

    /// Every "k=v" token, plus "bdi X:" → bdi=X (writeback events print it that way).
    static func parseKeyValues(_ text: Substring) -> KeyValueFields {
        var out: [String: String] = [:]
        let toks = fields(text)
        var i = 0
        while i < toks.count {
            let t = toks[i]
            if let eq = t.firstIndex(of: "="), eq != t.startIndex {
                out[String(t[..<eq])] = String(t[t.index(after: eq)...])
            } else if t == "bdi", i + 1 < toks.count, let d = DeviceID(toks[i + 1]) {
                out["bdi"] = d.description
                i += 1
            }
            i += 1
        }
        return KeyValueFields(out)
    }

    static func hex(_ s: String?) -> Int64? {
        guard var s else { return nil }
        if s.hasPrefix("0x") { s.removeFirst(2) }
        return Int64(s, radix: 16)
    }

    static func makePayload(name: Substring, fieldsText: Substring, kv: KeyValueFields) -> TracePayload {
        switch name {
        case "filemap_set_wb_err":
            guard let dev = kv["dev"].flatMap({ DeviceID($0) }), let ino = hex(kv["ino"]), let e = hex(kv["errseq"])
            else { return .other }
            return .setWbErr(SetWbErr(dev: dev, ino: UInt64(ino), errseq: e))
        case "file_check_and_advance_wb_err":
            guard let dev = kv["dev"].flatMap({ DeviceID($0) }), let ino = hex(kv["ino"]),
                  let old = hex(kv["old"]), let new = hex(kv["new"]) else { return .other }
            return .checkAndAdvance(CheckAndAdvanceWbErr(file: kv["file"] ?? "", dev: dev, ino: UInt64(ino), old: old, new: new))
        case "fuse_request_end":
            // "connection 39 req 4 len 16 error -2": alternate key / value words.
            let t = fields(fieldsText)
            var d: [Substring: Substring] = [:]
            var i = 0
            while i + 1 < t.count { d[t[i]] = t[i + 1]; i += 2 }
            guard let c = d["connection"].flatMap({ UInt32($0) }), let r = d["req"].flatMap({ UInt64($0) }),
                  let e = d["error"].flatMap({ Int32($0) }) else { return .other }
            return .fuseRequestEnd(FuseRequestEnd(connection: c, req: r, len: d["len"].flatMap { Int64($0) } ?? 0, error: e))
        case "fuse_request_send":
            // "connection 43 req 60 opcode 16 (FUSE_WRITE) len 81"
            let t = fields(fieldsText)
            var d: [Substring: Substring] = [:]
            var i = 0
            while i + 1 < t.count {
                if t[i].hasPrefix("(") { i += 1; continue }
                d[t[i]] = t[i + 1]; i += 2
            }
            guard let c = d["connection"].flatMap({ UInt32($0) }), let r = d["req"].flatMap({ UInt64($0) }),
                  let op = d["opcode"].flatMap({ UInt32($0) }) else { return .other }
            return .fuseRequestSend(FuseRequestSend(connection: c, req: r, opcode: op))
        case "balance_dirty_pages":
            return .balanceDirtyPages(kv)
        case "mm_vmscan_throttled":
            return .vmscanThrottled(kv)
        case "sched_process_exit":
            guard let pid = kv["pid"].flatMap({ Int32($0) }) else { return .other }
            return .processExit(ProcessExit(pid: pid, groupDead: kv["group_dead"].map { $0 == "true" || $0 == "1" }))
        default:
            return .other
        }
    }
}

extension TraceEvent {
    /// A sys_enter_* or sys_exit_* event.
    public var isSyscall: Bool {
        switch payload {
        case .syscallEnter, .syscallExit: return true
        default: return false
        }
    }

    /// balance_dirty_pages "pause" in ms (what the writer slept), if this is one.
    public var balanceDirtyPagesPauseMs: Int64? {
        if case .balanceDirtyPages(let kv) = payload { return kv.int("pause") }
        return nil
    }
}

/// `sys_enter_close` & co.: "sys_close(fd: 3)" (the fd in hex or decimal).
public struct SyscallEnter: Sendable, Equatable {
    /// "close", "fsync", "msync", ...
    public var call: String
    /// The fd argument; nil for calls without one (msync takes an address).
    public var fd: Int32?
}

/// `sys_exit_close` & co.: "sys_close -> 0xfffffffffffffffb".
public struct SyscallExit: Sendable, Equatable {
    public var call: String
    /// The return value (negative errno on failure).
    public var ret: Int64
    /// Positive errno, 0 when the call succeeded.
    public var errno: Int32 { ret < 0 && ret >= -4095 ? Int32(-ret) : 0 }
}

/// `sched:sched_process_exit`: "comm=python3 pid=14026 prio=120 group_dead=true".
public struct ProcessExit: Sendable, Equatable {
    /// The exiting thread.
    public var pid: Int32
    /// True when the whole process is gone (kernels that print it).
    public var groupDead: Bool?
}

extension TraceParser {
    /// Syscall events print without "name: ": "sys_close(fd: 3)" on entry
    /// and "sys_close -> 0x0" on exit. Named after their tracefs events
    /// ("sys_enter_close", "sys_exit_close").
    static func parseSyscall(_ text: Substring) -> (name: String, payload: TracePayload)? {
        guard text.hasPrefix("sys_") else { return nil }
        if let arrow = text.firstRange(of: " -> ") {
            let call = text[text.index(text.startIndex, offsetBy: 4)..<arrow.lowerBound]
            let v = text[arrow.upperBound...].trimmingSpaces()
            guard !call.isEmpty, !call.contains(" "), let ret = parseRegisterValue(Substring(v)) else { return nil }
            return ("sys_exit_" + call, .syscallExit(SyscallExit(call: String(call), ret: ret)))
        }
        guard let paren = text.firstIndex(of: "("), text.hasSuffix(")") else { return nil }
        let call = text[text.index(text.startIndex, offsetBy: 4)..<paren]
        guard !call.isEmpty, !call.contains(" ") else { return nil }
        var fd: Int32?
        for arg in text[text.index(after: paren)..<text.index(before: text.endIndex)].split(separator: ",") {
            let kv = arg.split(separator: ":", maxSplits: 1)
            if kv.count == 2, kv[0].trimmingSpaces() == "fd", let v = parseRegisterValue(Substring(kv[1].trimmingSpaces())) {
                fd = Int32(truncatingIfNeeded: v)
            }
        }
        return ("sys_enter_" + call, .syscallEnter(SyscallEnter(call: String(call), fd: fd)))
    }

    /// "0xfffffffffffffffb" → -5 (a 64-bit register), "3" → 3.
    static func parseRegisterValue(_ s: Substring) -> Int64? {
        if s.hasPrefix("0x") { return UInt64(s.dropFirst(2), radix: 16).map { Int64(bitPattern: $0) } }
        return Int64(s)
    }
}

/// `fuse:fuse_request_send`: "connection 43 req 60 opcode 16 (FUSE_WRITE) len 81".
/// A writeback WRITE sent from an application's thread (its close or fsync
/// writing the pages back) ties the failing reply to that thread.
public struct FuseRequestSend: Sendable, Equatable {
    public var connection: UInt32
    public var req: UInt64
    public var opcode: UInt32
    public static let writeOpcode: UInt32 = 16
}
