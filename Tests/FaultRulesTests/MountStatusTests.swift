@testable import FaultRules
import Testing

@Suite struct MountStatusTests {
    static let sample = MountStatus(
        version: "dev", pid: 1234, mountPoint: "/srv/db", source: "/srv/db", options: ["rules=/x"],
        writebackCache: true, armedRules: 2, capacity: .ready(limit: 1_048_576, used: 4096))

    @Test func encodesTheContractLine() {
        #expect(Self.sample.encoded() == #"{"version":"dev","pid":1234,"mountpoint":"/srv/db","source":"/srv/db","options":["rules=/x"],"writeback_cache":true,"armed_rules":2,"capacity":{"state":"ready","limit":1048576,"used":4096},"crashsim":"off","crashes":0}"# + "\n")
    }

    @Test(arguments: [MountStatus.Capacity.off, .measuring(limit: 0), .measuring(limit: Int64.max),
                      .ready(limit: 1 << 30, used: 0), .ready(limit: 4096, used: 8192)])
    func roundTripsEveryCapacityState(_ capacity: MountStatus.Capacity) throws {
        var status = Self.sample
        status.capacity = capacity
        #expect(try MountStatus.decode(status.encoded()) == status)
    }

    @Test func capacityKeysPerState() {
        var status = Self.sample
        status.capacity = .off
        #expect(status.encoded().hasSuffix(#""capacity":{"state":"off"},"crashsim":"off","crashes":0}"# + "\n"))
        status.capacity = .measuring(limit: 7)
        #expect(status.encoded().hasSuffix(#""capacity":{"state":"measuring","limit":7},"crashsim":"off","crashes":0}"# + "\n"))
    }

    @Test(arguments: MountStatus.CrashSimulation.allCases)
    func roundTripsEveryCrashState(_ state: MountStatus.CrashSimulation) throws {
        var status = Self.sample
        status.crashSimulation = state
        status.crashes = 3
        var report = CrashReport()
        report.request = CrashRequest(torn: true, seed: 9, sectorSize: 512)
        report.bytesReverted = 4096
        status.lastCrash = report
        #expect(status.encoded().contains(#""crashsim":"\#(state.rawValue)","crashes":3,"last_crash":{"files_reverted":0,"bytes_reverted":4096,"#))
        #expect(try MountStatus.decode(status.encoded()) == status)
        status.lastCrash = nil
        #expect(!status.encoded().contains("last_crash"))
        #expect(try MountStatus.decode(status.encoded()) == status)
    }

    @Test func roundTripsAwkwardText() throws {
        let status = MountStatus(version: "1.0 \"β\"", pid: Int32.max, mountPoint: "/mnt/a b\n\\c", source: "/src/ü\u{1}",
                                 options: [], writebackCache: false, armedRules: 0, capacity: .off)
        #expect(try MountStatus.decode(status.encoded()) == status)
    }

    @Test func acceptsKeysInAnyOrderAndWhiteSpace() throws {
        let text = #" { "crashes":0, "crashsim":"posix", "capacity" : {"used":1,"limit":2,"state":"ready"}, "armed_rules":0, "writeback_cache":false, "options":[], "source":"s", "mountpoint":"m", "pid":5, "version":"v" } "#
        let status = try MountStatus.decode(text)
        #expect(status.pid == 5 && status.capacity == .ready(limit: 2, used: 1))
    }

    static let good = #"{"version":"dev","pid":1234,"mountpoint":"/m","source":"/s","options":["a"],"writeback_cache":true,"armed_rules":2,"capacity":{"state":"off"},"crashsim":"off","crashes":0}"#

    /// The good line with `old` replaced by `new`: the error it must give.
    @Test(arguments: [
        ("", "", JSONRecordError.notJSON(JSONError(offset: 0, reason: "unexpected end"))),
        ("", "[1]", .notAnObject),
        (",\"pid\":1234", "", .missingKey("pid")),
        (",\"armed_rules\":2", "", .missingKey("armed_rules")),
        ("\"pid\":1234", "\"pid\":\"1234\"", .badValue("pid")),
        ("\"pid\":1234", "\"pid\":0", .badValue("pid")),
        ("\"pid\":1234", "\"pid\":-3", .badValue("pid")),
        ("\"pid\":1234", "\"pid\":4294967296", .badValue("pid")),
        ("\"pid\":1234", "\"pid\":12.5", .badValue("pid")),
        ("\"pid\":1234", "\"pid\":1e3", .badValue("pid")),
        ("\"pid\":1234", "\"pid\":null", .badValue("pid")),
        ("[\"a\"]", "[1]", .badValue("options")),
        ("[\"a\"]", "\"a\"", .badValue("options")),
        ("\"writeback_cache\":true", "\"writeback_cache\":1", .badValue("writeback_cache")),
        ("\"armed_rules\":2", "\"armed_rules\":-1", .badValue("armed_rules")),
        ("\"version\":\"dev\"", "\"version\":null", .badValue("version")),
        ("\"version\":\"dev\"", "\"version\":\"dev\",\"extra\":1", .unknownKey("extra")),
        ("{\"state\":\"off\"}", "\"off\"", .badValue("capacity")),
        ("{\"state\":\"off\"}", "{\"state\":\"full\"}", .badValue("capacity.state")),
        ("{\"state\":\"off\"}", "{\"state\":\"off\",\"limit\":1}", .unknownKey("capacity.limit")),
        ("{\"state\":\"off\"}", "{\"state\":\"measuring\"}", .missingKey("capacity.limit")),
        ("{\"state\":\"off\"}", "{\"state\":\"measuring\",\"limit\":1,\"used\":0}", .unknownKey("capacity.used")),
        ("{\"state\":\"off\"}", "{\"state\":\"ready\",\"limit\":1}", .missingKey("capacity.used")),
        ("{\"state\":\"off\"}", "{\"state\":\"ready\",\"limit\":-1,\"used\":0}", .badValue("capacity.limit")),
        ("{\"state\":\"off\"}", "{\"state\":\"ready\",\"limit\":9223372036854775808,\"used\":0}", .badValue("capacity.limit")),
        (",\"crashsim\":\"off\"", "", .missingKey("crashsim")),
        (",\"crashes\":0", "", .missingKey("crashes")),
        ("\"crashsim\":\"off\"", "\"crashsim\":\"on\"", .badValue("crashsim")),
        ("\"crashes\":0", "\"crashes\":-1", .badValue("crashes")),
        ("\"crashes\":0", "\"crashes\":0,\"last_crash\":{}", .missingKey("last_crash.files_reverted")),
        ("\"crashes\":0", "\"crashes\":0,\"last_crash\":1", .badValue("last_crash")),
    ])
    func refuses(_ old: String, _ new: String, _ expected: JSONRecordError) {
        let text = old.isEmpty ? new : Self.good.replacingFirst(old, with: new)
        #expect(text != Self.good)
        #expect(throws: expected) { try MountStatus.decode(text) }
    }

    @Test(arguments: ["not json", "{}", #"{"version":"dev"}"#, Self.good + "x", Self.good + "\n" + Self.good,
                      Self.good.replacingFirst("\"pid\":1234", with: "\"pid\":1234,\"pid\":1234")])
    func refusesBrokenText(_ text: String) {
        #expect(throws: JSONRecordError.self) { try MountStatus.decode(text) }
    }
}

extension String {
    /// Foundation-free replacement of the first occurrence (tests only).
    func replacingFirst(_ old: String, with new: String) -> String {
        guard let r = range(of: old) else { return self }
        return String(self[..<r.lowerBound]) + new + String(self[r.upperBound...])
    }

    func range(of needle: String) -> Range<String.Index>? {
        var i = startIndex
        while i < endIndex {
            if self[i...].hasPrefix(needle) { return i..<index(i, offsetBy: needle.count) }
            i = index(after: i)
        }
        return nil
    }
}
