// What a running daemon says about itself in MOUNT/.faultfs/status: one JSON
// object on one line, keys in a fixed order, e.g.
//
//   {"version":"0.412+g1a2b3c4d5e6f","commit":"1a2b3c4d5e6f...","pid":1234,"mountpoint":"/srv/db","source":"/srv/db",
//    "options":["rules=/x"],"writeback_cache":true,"armed_rules":2,
//    "capacity":{"state":"ready","limit":1048576,"used":4096},
//    "crashsim":"posix","crashes":1,"last_crash":{"files_reverted":1,...}}
//
// (`last_crash` only after a crash.)
//
// `faultfs umount`, the monitor's runner, the bench and the campaigns read it
// to find the daemon's pid and the capacity figures.

public struct MountStatus: Sendable, Equatable {
    public var version: String
    /// The git commit the daemon was built from ("unknown" outside a checkout).
    public var commit: String
    public var pid: Int32
    public var mountPoint: String
    public var source: String
    public var options: [String]
    public var writebackCache: Bool
    public var armedRules: Int
    public var capacity: Capacity
    /// Power-loss simulation: off, on with a name model, or stopped (its spill file failed).
    public var crashSimulation: CrashSimulation
    /// Crashes simulated since the mount.
    public var crashes: Int
    /// What the last crash undid; nil before the first.
    public var lastCrash: CrashReport?

    public enum CrashSimulation: String, Sendable, Equatable, CaseIterable {
        case off, posix, journal, stopped
        public init(_ names: NameDurability?) { self = names.map { $0 == .posix ? .posix : .journal } ?? .off }
    }

    /// The capacity model: off, measuring the backing tree (limit known, usage
    /// not yet), or ready.
    public enum Capacity: Sendable, Equatable {
        case off
        case measuring(limit: Int64)
        case ready(limit: Int64, used: Int64)
    }

    public init(version: String, commit: String, pid: Int32, mountPoint: String, source: String, options: [String],
                writebackCache: Bool, armedRules: Int, capacity: Capacity,
                crashSimulation: CrashSimulation = .off, crashes: Int = 0, lastCrash: CrashReport? = nil) {
        self.version = version
        self.commit = commit
        self.pid = pid
        self.mountPoint = mountPoint
        self.source = source
        self.options = options
        self.writebackCache = writebackCache
        self.armedRules = armedRules
        self.capacity = capacity
        self.crashSimulation = crashSimulation
        self.crashes = crashes
        self.lastCrash = lastCrash
    }

    /// Where a mount's daemon serves its status: `MOUNT/.faultfs/status`, or
    /// under the name given with `-o control=NAME`.
    public static func path(mountPoint: String, controlDirectory: String = ".faultfs") -> String {
        (mountPoint.hasSuffix("/") ? mountPoint : mountPoint + "/") + controlDirectory + "/status"
    }

    /// The status line, with its "\n".
    public func encoded() -> String {
        let capacityText: String
        switch capacity {
        case .off: capacityText = #"{"state":"off"}"#
        case .measuring(let limit): capacityText = #"{"state":"measuring","limit":\#(limit)}"#
        case .ready(let limit, let used): capacityText = #"{"state":"ready","limit":\#(limit),"used":\#(used)}"#
        }
        let fields: [(String, String)] = [
            ("version", jsonString(version)),
            ("commit", jsonString(commit)),
            ("pid", String(pid)),
            ("mountpoint", jsonString(mountPoint)),
            ("source", jsonString(source)),
            ("options", "[" + options.map(jsonString).joined(separator: ",") + "]"),
            ("writeback_cache", writebackCache ? "true" : "false"),
            ("armed_rules", String(armedRules)),
            ("capacity", capacityText),
            ("crashsim", jsonString(crashSimulation.rawValue)),
            ("crashes", String(crashes)),
        ] + (lastCrash.map { [("last_crash", $0.json())] } ?? [])
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}\n"
    }

    /// Reads a status line (surrounding white space allowed). Every key must
    /// be present with its type; unknown keys are refused, so a reader never
    /// silently misses what a newer daemon says.
    public static func decode(_ text: String) throws(JSONRecordError) -> MountStatus {
        let r = try JSONRecord(parsing: text)
        try r.refuseOtherKeys(than: ["version", "commit", "pid", "mountpoint", "source", "options", "writeback_cache",
                                     "armed_rules", "capacity", "crashsim", "crashes", "last_crash"])
        let c = try r.record("capacity")
        let capacity: Capacity
        switch try c.string("state") {
        case "off":
            try c.refuseOtherKeys(than: ["state"])
            capacity = .off
        case "measuring":
            try c.refuseOtherKeys(than: ["state", "limit"])
            capacity = .measuring(limit: try c.integer("limit", in: 0...Int64.max))
        case "ready":
            try c.refuseOtherKeys(than: ["state", "limit", "used"])
            capacity = .ready(limit: try c.integer("limit", in: 0...Int64.max), used: try c.integer("used", in: 0...Int64.max))
        default:
            throw .badValue("capacity.state")
        }
        guard let crashSimulation = CrashSimulation(rawValue: try r.string("crashsim")) else { throw .badValue("crashsim") }
        let lastCrash: CrashReport? = r.members.contains { $0.key == "last_crash" }
            ? try CrashReport.decode(r.record("last_crash")) : nil
        return MountStatus(
            version: try r.string("version"), commit: try r.string("commit"), pid: try r.integer("pid", in: 1...Int32.max),
            mountPoint: try r.string("mountpoint"), source: try r.string("source"), options: try r.strings("options"),
            writebackCache: try r.bool("writeback_cache"), armedRules: try r.integer("armed_rules", in: 0...Int(Int32.max)),
            capacity: capacity, crashSimulation: crashSimulation, crashes: try r.integer("crashes", in: 0...Int.max),
            lastCrash: lastCrash)
    }
}

/// Why a text is not a status line (the name helper code may already use).
public typealias MountStatusError = JSONRecordError
