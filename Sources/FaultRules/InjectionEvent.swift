// One line of the events file: a fault that was injected, or a release or
// capacity change. Its one codec: `jsonLine()` writes it (the daemon's
// `.faultfs/events`, the monitor's events.jsonl), `decode` reads it back
// (the monitor, the tests), both without Foundation.

public struct InjectionEvent: Sendable, Equatable {
    /// CLOCK_REALTIME, nanoseconds since the epoch.
    public var timeNs: Int64
    public var ruleID: String
    public var action: Action
    public var op: FaultOp
    /// Relative to the mount root; nil if unknown.
    public var path: String?
    public var inode: UInt64
    /// -1: none (rendered as null).
    public var offset: Int64
    public var length: Int64
    /// 0: none.
    public var errno: Int32
    /// 0: no caller (writeback).
    public var pid: Int32
    public var comm: String?
    public var writeback: Bool
    /// `crash` events: what the crash undid (its members follow `writeback`).
    public var crash: CrashReport?
    /// `corrupt`: how many bytes of the data [offset, offset+length) changed.
    public var changed: Int64
    /// `corrupt`: the file offsets of the first changed bytes, ascending, at
    /// most `Corruption.shownPositions` of them.
    public var changedOffsets: [Int64]

    /// What happened: a rule's action (`FaultAction`'s word), the end of a
    /// stall, or a change of the capacity model.
    public enum Action: String, Sendable, CaseIterable {
        case fail, delay, stall, drop, short, corrupt
        /// Stalled requests of the rule went on (`release`, or the timeout).
        case release
        /// `capacity SIZE|off` was applied (length: the limit, -1 for off).
        case capacity
        /// A simulated power loss (the event carries the crash report).
        case crash
        /// Crash simulation turned itself off (errno: why, such as ENOSPC of the spill file).
        case crashsimStopped = "crashsim-stopped"

        /// The word in the events file.
        public var name: String { rawValue }

        /// The event a rule's action records when it fires.
        public init(_ action: FaultAction) {
            switch action {
            case .fail: self = .fail
            case .delay: self = .delay
            case .stall: self = .stall
            case .drop: self = .drop
            case .short: self = .short
            case .corrupt: self = .corrupt
            }
        }
    }

    public init(timeNs: Int64, ruleID: String, action: Action, op: FaultOp, path: String? = nil,
                inode: UInt64 = 0, offset: Int64 = -1, length: Int64 = 0, errno: Int32 = 0,
                pid: Int32 = 0, comm: String? = nil, writeback: Bool = false, crash: CrashReport? = nil,
                changed: Int64 = 0, changedOffsets: [Int64] = []) {
        self.timeNs = timeNs
        self.ruleID = ruleID
        self.action = action
        self.op = op
        self.path = path
        self.inode = inode
        self.offset = offset
        self.length = length
        self.errno = errno
        self.pid = pid
        self.comm = comm
        self.writeback = writeback
        self.crash = crash
        self.changed = changed
        self.changedOffsets = changedOffsets
    }

    /// One JSON object and "\n". `errno_name` is null when errno is 0 or has no name.
    /// `changed` and `changed_offsets` come last, on `corrupt` lines only.
    public func jsonLine() -> String {
        var fields: [(String, String)] = [
            ("time_ns", String(timeNs)),
            ("rule", jsonString(ruleID)),
            ("action", jsonString(action.name)),
            ("op", jsonString(op.name)),
            ("path", path.map(jsonString) ?? "null"),
            ("inode", String(inode)),
            ("offset", offset < 0 ? "null" : String(offset)),
            ("length", String(length)),
            ("errno", String(errno)),
            ("errno_name", errnoName(errno).map(jsonString) ?? "null"),
            ("pid", String(pid)),
            ("comm", comm.map(jsonString) ?? "null"),
            ("writeback", writeback ? "true" : "false"),
        ] + (crash?.jsonMembers ?? [])
        if action == .corrupt {
            fields.append(("changed", String(changed)))
            fields.append(("changed_offsets", "[" + changedOffsets.map { String($0) }.joined(separator: ",") + "]"))
        }
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}\n"
    }

    /// The keys of a line, in the order `jsonLine()` writes them.
    static let keys = ["time_ns", "rule", "action", "op", "path", "inode", "offset", "length",
                       "errno", "errno_name", "pid", "comm", "writeback"]
    /// The keys only `corrupt` lines have (and must have).
    static let corruptKeys = ["changed", "changed_offsets"]

    /// Reads one line written by `jsonLine()`. Strict: every key must be
    /// there with its type; the only other key allowed is `kind` with
    /// "injection" (the monitor's events.jsonl adds it in front).
    public static func decode(_ line: String) throws(JSONRecordError) -> InjectionEvent {
        try InjectionEvent(json: JSONRecord(parsing: line))
    }

    /// Reads an already parsed line (see `decode`).
    public init(json value: JSONValue) throws(JSONRecordError) {
        try self.init(json: JSONRecord(value))
    }

    init(json r: JSONRecord) throws(JSONRecordError) {
        guard let action = Action(rawValue: try r.string("action")) else { throw .badValue("action") }
        try r.refuseOtherKeys(than: Self.keys + (action == .crash ? CrashReport.jsonKeys : []) + (action == .corrupt ? Self.corruptKeys : []),
                              allowing: { $0 == "kind" && $1.string == "injection" })
        let opName = try r.string("op")
        guard let op = FaultOp.allCases.first(where: { $0.name == opName }) else { throw .badValue("op") }
        let offset: Int64 = try r.value("offset").isNull ? -1 : r.integer("offset", in: 0...Int64.max)
        _ = try r.optionalString("errno_name") // derived from errno; checked for its type only

        self.init(timeNs: try r.integer("time_ns", in: Int64.min...Int64.max), ruleID: try r.string("rule"),
                  action: action, op: op, path: try r.optionalString("path"),
                  inode: try r.integer("inode", in: 0...UInt64.max), offset: offset,
                  length: try r.integer("length", in: -1...Int64.max), errno: try r.integer("errno", in: 0...Int32.max),
                  pid: try r.integer("pid", in: 0...Int32.max), comm: try r.optionalString("comm"),
                  writeback: try r.bool("writeback"), crash: action == .crash ? try CrashReport(members: r) : nil)
        if action == .corrupt {
            changed = try r.integer("changed", in: 0...Int64.max)
            guard let offsets = try r.value("changed_offsets").array else { throw .badValue("changed_offsets") }
            changedOffsets = []
            for element in offsets {
                guard let offset = element.int64, offset >= 0 else { throw .badValue("changed_offsets") }
                changedOffsets.append(offset)
            }
        }
    }
}
