// What a running daemon says about itself in MOUNT/.faultfs/status: one JSON
// object on one line, keys in a fixed order, e.g.
//
//   {"version":"dev","pid":1234,"mountpoint":"/srv/db","source":"/srv/db",
//    "options":["rules=/x"],"writeback_cache":true,"armed_rules":2,
//    "capacity":{"state":"ready","limit":1048576,"used":4096}}
//
// `faultfs umount`, the monitor's runner, the bench and the campaigns read it
// to find the daemon's pid and the capacity figures.

public struct MountStatus: Sendable, Equatable {
    public var version: String
    public var pid: Int32
    public var mountPoint: String
    public var source: String
    public var options: [String]
    public var writebackCache: Bool
    public var armedRules: Int
    public var capacity: Capacity

    /// The capacity model: off, measuring the backing tree (limit known, usage
    /// not yet), or ready.
    public enum Capacity: Sendable, Equatable {
        case off
        case measuring(limit: Int64)
        case ready(limit: Int64, used: Int64)
    }

    public init(version: String, pid: Int32, mountPoint: String, source: String, options: [String],
                writebackCache: Bool, armedRules: Int, capacity: Capacity) {
        self.version = version
        self.pid = pid
        self.mountPoint = mountPoint
        self.source = source
        self.options = options
        self.writebackCache = writebackCache
        self.armedRules = armedRules
        self.capacity = capacity
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
            ("pid", String(pid)),
            ("mountpoint", jsonString(mountPoint)),
            ("source", jsonString(source)),
            ("options", "[" + options.map(jsonString).joined(separator: ",") + "]"),
            ("writeback_cache", writebackCache ? "true" : "false"),
            ("armed_rules", String(armedRules)),
            ("capacity", capacityText),
        ]
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}\n"
    }

    /// Reads a status line (surrounding white space allowed). Every key must
    /// be present with its type; unknown keys are refused, so a reader never
    /// silently misses what a newer daemon says.
    public static func decode(_ text: String) throws(MountStatusError) -> MountStatus {
        let value: JSONValue
        do { value = try parseJSON(text) } catch { throw .notJSON(error) }
        guard case .object(let members) = value else { throw .notAnObject }
        let known = ["version", "pid", "mountpoint", "source", "options", "writeback_cache", "armed_rules", "capacity"]
        if let unknown = members.first(where: { !known.contains($0.key) }) { throw .unknownKey(unknown.key) }

        func field(_ key: String) throws(MountStatusError) -> JSONValue {
            guard let v = value[key] else { throw .missingKey(key) }
            return v
        }
        func string(_ key: String) throws(MountStatusError) -> String {
            guard let s = try field(key).string else { throw .badValue(key) }
            return s
        }
        func integer(_ key: String, in object: JSONValue, range: ClosedRange<Int64>) throws(MountStatusError) -> Int64 {
            guard let v = object[key] else { throw .missingKey(key) }
            guard let n = v.int64, range.contains(n) else { throw .badValue(key) }
            return n
        }

        guard let optionValues = try field("options").array else { throw .badValue("options") }
        var options: [String] = []
        for option in optionValues {
            guard let s = option.string else { throw .badValue("options") }
            options.append(s)
        }
        guard let writebackCache = try field("writeback_cache").bool else { throw .badValue("writeback_cache") }

        let capacityObject = try field("capacity")
        guard case .object(let capacityMembers) = capacityObject,
              let state = capacityObject["state"]?.string else { throw .badValue("capacity") }
        let capacityKeys: [String]
        let capacity: Capacity
        switch state {
        case "off":
            capacityKeys = ["state"]
            capacity = .off
        case "measuring":
            capacityKeys = ["state", "limit"]
            capacity = .measuring(limit: try integer("limit", in: capacityObject, range: 0...Int64.max))
        case "ready":
            capacityKeys = ["state", "limit", "used"]
            capacity = .ready(limit: try integer("limit", in: capacityObject, range: 0...Int64.max),
                              used: try integer("used", in: capacityObject, range: 0...Int64.max))
        default:
            throw .badValue("capacity.state")
        }
        if let extra = capacityMembers.first(where: { !capacityKeys.contains($0.key) }) {
            throw .unknownKey("capacity." + extra.key)
        }

        return MountStatus(
            version: try string("version"),
            pid: Int32(try integer("pid", in: value, range: 1...Int64(Int32.max))),
            mountPoint: try string("mountpoint"),
            source: try string("source"),
            options: options,
            writebackCache: writebackCache,
            armedRules: Int(try integer("armed_rules", in: value, range: 0...Int64(Int32.max))),
            capacity: capacity)
    }
}

/// Why a text is not a status line.
public enum MountStatusError: Error, Sendable, Equatable, CustomStringConvertible {
    case notJSON(JSONError)
    case notAnObject
    case missingKey(String)
    case unknownKey(String)
    /// The key is there with the wrong type or an out-of-range value.
    case badValue(String)

    public var description: String {
        switch self {
        case .notJSON(let e): "status is not JSON: \(e)"
        case .notAnObject: "status is not a JSON object"
        case .missingKey(let k): "status has no \"\(k)\""
        case .unknownKey(let k): "status has an unknown key \"\(k)\""
        case .badValue(let k): "status has a bad value for \"\(k)\""
        }
    }
}
