// One line of the events file: a fault that was injected, or a release or
// capacity change. Rendered as JSON Lines without Foundation.

public struct InjectionEvent: Sendable, Equatable {
    /// CLOCK_REALTIME, nanoseconds since the epoch.
    public var timeNs: Int64
    public var ruleID: String
    /// "fail", "delay", "stall", "drop", "short", "release" or "capacity".
    public var action: String
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

    public init(timeNs: Int64, ruleID: String, action: String, op: FaultOp, path: String? = nil,
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
            ("action", jsonString(action)),
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
}
