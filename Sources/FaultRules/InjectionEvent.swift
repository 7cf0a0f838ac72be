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

    /// What happened: a rule's action (`FaultAction`'s word), the end of a
    /// stall, or a change of the capacity model.
    public enum Action: String, Sendable, CaseIterable {
        case fail, delay, stall, drop, short
        /// Stalled requests of the rule went on (`release`, or the timeout).
        case release
        /// `capacity SIZE|off` was applied (length: the limit, -1 for off).
        case capacity

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
            }
        }
    }

    public init(timeNs: Int64, ruleID: String, action: Action, op: FaultOp, path: String? = nil,
                inode: UInt64 = 0, offset: Int64 = -1, length: Int64 = 0, errno: Int32 = 0,
                pid: Int32 = 0, comm: String? = nil, writeback: Bool = false) {
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
    }

    /// One JSON object and "\n". `errno_name` is null when errno is 0 or has no name.
    public func jsonLine() -> String {
        let fields: [(String, String)] = [
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
        ]
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}\n"
    }

    /// The keys of a line, in the order `jsonLine()` writes them.
    static let keys = ["time_ns", "rule", "action", "op", "path", "inode", "offset", "length",
                       "errno", "errno_name", "pid", "comm", "writeback"]

    /// Reads one line written by `jsonLine()`. Strict: every key must be
    /// there with its type; the only other key allowed is `kind` with
    /// "injection" (the monitor's events.jsonl adds it in front).
    public static func decode(_ line: String) throws(InjectionEventError) -> InjectionEvent {
        let value: JSONValue
        do { value = try parseJSON(line) } catch { throw .notJSON(error) }
        return try InjectionEvent(json: value)
    }

    /// Reads an already parsed line (see `decode`).
    public init(json value: JSONValue) throws(InjectionEventError) {
        guard case .object(let members) = value else { throw .notAnObject }
        for member in members where !Self.keys.contains(member.key) {
            guard member.key == "kind", member.value.string == "injection" else { throw .unknownKey(member.key) }
        }
        func field(_ key: String) throws(InjectionEventError) -> JSONValue {
            guard let v = value[key] else { throw .missingKey(key) }
            return v
        }
        func string(_ key: String) throws(InjectionEventError) -> String {
            guard let s = try field(key).string else { throw .badValue(key) }
            return s
        }
        /// A string or null.
        func optionalString(_ key: String) throws(InjectionEventError) -> String? {
            let v = try field(key)
            if v.isNull { return nil }
            guard let s = v.string else { throw .badValue(key) }
            return s
        }
        func integer<T: FixedWidthInteger>(_ key: String, _: T.Type, minimum: T = 0) throws(InjectionEventError) -> T {
            guard let n = try field(key).integer(as: T.self), n >= minimum else { throw .badValue(key) }
            return n
        }

        guard let action = Action(rawValue: try string("action")) else { throw .badValue("action") }
        let opName = try string("op")
        guard let op = FaultOp.allCases.first(where: { $0.name == opName }) else { throw .badValue("op") }
        let offsetValue = try field("offset")
        let offset: Int64
        if offsetValue.isNull {
            offset = -1
        } else {
            guard let n = offsetValue.int64, n >= 0 else { throw .badValue("offset") }
            offset = n
        }
        _ = try optionalString("errno_name") // derived from errno; checked for its type only
        guard let writeback = try field("writeback").bool else { throw .badValue("writeback") }

        self.init(timeNs: try integer("time_ns", Int64.self, minimum: Int64.min), ruleID: try string("rule"),
                  action: action, op: op, path: try optionalString("path"), inode: try integer("inode", UInt64.self),
                  offset: offset, length: try integer("length", Int64.self, minimum: -1),
                  errno: try integer("errno", Int32.self), pid: try integer("pid", Int32.self),
                  comm: try optionalString("comm"), writeback: writeback)
    }
}

/// Why a line is not an event line.
public enum InjectionEventError: Error, Sendable, Equatable, CustomStringConvertible {
    case notJSON(JSONError)
    case notAnObject
    case missingKey(String)
    case unknownKey(String)
    /// The key is there with the wrong type or an out-of-range value.
    case badValue(String)

    public var description: String {
        switch self {
        case .notJSON(let e): "event is not JSON: \(e)"
        case .notAnObject: "event is not a JSON object"
        case .missingKey(let k): "event has no \"\(k)\""
        case .unknownKey(let k): "event has an unknown key \"\(k)\""
        case .badValue(let k): "event has a bad value for \"\(k)\""
        }
    }
}
