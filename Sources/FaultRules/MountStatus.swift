// Placeholder for helper C's MountStatus (same API); C's file replaces this one.

public struct MountStatus: Sendable, Equatable {
    public var version: String
    public var pid: Int32
    public var mountPoint: String
    public var source: String
    public var options: [String]
    public var writebackCache: Bool
    public var armedRules: Int
    public var capacity: Capacity

    public enum Capacity: Sendable, Equatable {
        case off
        case measuring(limit: Int64)
        case ready(limit: Int64, used: Int64)
    }

    public struct DecodeError: Error, Equatable { public var message: String }

    public init(version: String, pid: Int32, mountPoint: String, source: String, options: [String],
                writebackCache: Bool, armedRules: Int, capacity: Capacity) {
        self.version = version; self.pid = pid; self.mountPoint = mountPoint; self.source = source
        self.options = options; self.writebackCache = writebackCache; self.armedRules = armedRules
        self.capacity = capacity
    }

    public func encoded() -> String {
        func string(_ s: String) -> String {
            var out = "\""
            for u in s.unicodeScalars {
                switch u {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case _ where u.value < 0x20:
                    let hex = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                default: out.unicodeScalars.append(u)
                }
            }
            return out + "\""
        }
        let capacityText: String = switch capacity {
        case .off: "{\"state\":\"off\"}"
        case .measuring(let limit): "{\"state\":\"measuring\",\"limit\":\(limit)}"
        case .ready(let limit, let used): "{\"state\":\"ready\",\"limit\":\(limit),\"used\":\(used)}"
        }
        return "{\"version\":\(string(version)),\"pid\":\(pid),\"mountpoint\":\(string(mountPoint)),"
            + "\"source\":\(string(source)),\"options\":[\(options.map(string).joined(separator: ","))],"
            + "\"writeback_cache\":\(writebackCache),\"armed_rules\":\(armedRules),\"capacity\":\(capacityText)}\n"
    }

    public static func decode(_ text: String) throws -> MountStatus {
        throw DecodeError(message: "decoding is helper C's")
    }
}
