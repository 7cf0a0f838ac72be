@testable import FaultRules
import Testing

@Suite struct UnitsTests {
    @Test func durations() {
        #expect(parseDuration("200ms") == 200_000_000)
        #expect(parseDuration("2s") == 2_000_000_000)
        #expect(parseDuration("1.5s") == 1_500_000_000)
        #expect(parseDuration(".5s") == 500_000_000)
        #expect(parseDuration("100us") == 100_000)
        #expect(parseDuration("1m") == 60_000_000_000)
        #expect(parseDuration("0.5m") == 30_000_000_000)
        #expect(parseDuration("2h") == 7_200_000_000_000)
        #expect(parseDuration("7ns") == 7)
        #expect(parseDuration("1.000s") == 1_000_000_000)
        #expect(parseDuration("3MS") == 3_000_000)
    }

    @Test(arguments: ["", "10", "ms", "1.2.3s", "1.5ns", "-1s", "1e3s", "1 s", "99999999999h", "5days", "."])
    func badDurations(_ text: String) {
        #expect(parseDuration(text[...]) == nil)
    }

    @Test func sizes() {
        #expect(parseSize("4096") == 4096)
        #expect(parseSize("512K") == 524_288)
        #expect(parseSize("64M") == 64 << 20)
        #expect(parseSize("1G") == 1 << 30)
        #expect(parseSize("2GiB") == 2 << 30)
        #expect(parseSize("3kb") == 3072)
        #expect(parseSize("1T") == 1 << 40)
        #expect(parseSize("10B") == 10)
        #expect(parseSize("0") == 0)
    }

    @Test func decimalSizesShareTheDurationGrammar() {
        #expect(parseSize("1.5G") == 3 << 29)
        #expect(parseSize("1.5M") == 3 << 19)
        #expect(parseSize("0.5K") == 512)
        #expect(parseSize(".25M") == 1 << 18)
        #expect(parseSize("2.0") == 2)
        #expect(parseSize("1.000G") == 1 << 30)
        // The same digits and dot as a duration, the same refusals.
        #expect(parseDuration("1.5s") == 1_500_000_000)
        #expect(parseSize("1.2.3M") == nil && parseDuration("1.2.3s") == nil)
    }

    @Test(arguments: ["", "1.5", "0.3K", "1.0000001K", "M", "1X", "-1", "9999999999T", "99999999999999999999", "1iB", "1 M", "1e3", "."])
    func badSizes(_ text: String) {
        #expect(parseSize(text[...]) == nil)
    }

    @Test(arguments: [UInt64(1), 999, 1000, 1_500_000_000, 60_000_000_000, 90_000_000_000, 3_600_000_000_000, 123_456_789])
    func durationsRoundTrip(_ ns: UInt64) {
        #expect(parseDuration(formatDuration(ns)[...]) == ns)
    }

    @Test func canonicalUnits() {
        #expect(formatDuration(1_500_000_000) == "1500ms")
        #expect(formatDuration(120_000_000_000) == "2m")
        #expect(formatSize(1 << 20) == "1M")
        #expect(formatSize(1536) == "1536")
        #expect(formatSize(0) == "0")
        #expect(parseSize(formatSize(Int64.max)[...]) == Int64.max)
    }

    @Test func shortWriteLength() {
        #expect(FaultAction.shortWriteLength(requested: 4096, bytes: nil) == 2048)
        #expect(FaultAction.shortWriteLength(requested: 1, bytes: nil) == 0)
        #expect(FaultAction.shortWriteLength(requested: 4096, bytes: 100) == 100)
        #expect(FaultAction.shortWriteLength(requested: 100, bytes: 4096) == 99)
        #expect(FaultAction.shortWriteLength(requested: 0, bytes: nil) == 0)
    }
}

@Suite struct ErrnoTests {
    @Test func namesAndValues() {
        #expect(errnoName(28) == "ENOSPC")
        #expect(errnoName(1) == "EPERM")
        #expect(errnoName(133) == "EHWPOISON")
        #expect(errnoName(0) == nil)
        #expect(errnoName(41) == nil)
        #expect(errnoName(134) == nil)
        #expect(errnoValue("ENOSPC") == 28)
        #expect(errnoValue("enospc") == 28)
        #expect(errnoValue("EWOULDBLOCK") == 11)
        #expect(errnoValue("EDEADLOCK") == 35)
        #expect(errnoValue("ENOTSUP") == 95)
        #expect(errnoValue("ENOPE") == nil)
    }

    @Test func everyValueFrom1To133ExceptTheGapsHasANameThatMapsBack() {
        let named = (Int32(1)...133).filter { errnoName($0) != nil }
        #expect(named.count == 131)
        for value in named {
            #expect(errnoValue(errnoName(value)!) == value)
        }
    }
}

@Suite struct PathGlobTests {
    static let cases: [(pattern: String, path: String, matches: Bool)] = [
        ("*.wal", "x.wal", true), ("*.wal", "d/x.wal", false), ("*.wal", ".wal", true),
        ("**/*.wal", "x.wal", true), ("**/*.wal", "d/x.wal", true), ("**/*.wal", "a/b/c/x.wal", true),
        ("**/*.wal", "x.walx", false),
        ("pg_wal/**", "pg_wal", true), ("pg_wal/**", "pg_wal/000001", true), ("pg_wal/**", "pg_wal/a/b", true),
        ("pg_wal/**", "base/pg_wal/x", false), ("pg_wal/**", "pg_wal2/x", false),
        ("a/**/b", "a/b", true), ("a/**/b", "a/x/y/b", true), ("a/**/b", "a/x/y/c", false),
        ("**", "", true), ("**", "anything/at/all", true),
        ("data?.db", "data1.db", true), ("data?.db", "data10.db", false), ("data?.db", "data/.db", false),
        ("?", "é", true), ("??", "é", false), ("*é*", "café-crème", true),
        ("a*b*c", "abc", true), ("a*b*c", "axxbyyc", true), ("a*b*c", "axxbyy", false), ("a*b*c", "acb", false),
        ("/abs/x", "abs/x", true), ("abs/x", "/abs/x", true),
        ("exact", "exact", true), ("exact", "exactly", false), ("exact", "", false),
        ("**/**/x", "x", true), ("d/*", "d/x/y", false), ("*/*", "d/x", true),
    ]

    @Test(arguments: cases)
    func matching(_ example: (pattern: String, path: String, matches: Bool)) throws {
        let glob = try #require(PathGlob(example.pattern))
        #expect(glob.matches(example.path[...]) == example.matches)
        // Same answer for a non-native (bridged-looking) substring of a larger string.
        let embedded = "<<" + example.path + ">>"
        let slice = embedded.dropFirst(2).dropLast(2)
        #expect(glob.matches(slice) == example.matches)
    }

    @Test(arguments: ["", "/", "a//b", "dir/", "a**", "**b/c", "x/***"])
    func invalidPatterns(_ pattern: String) {
        #expect(PathGlob(pattern) == nil)
    }
}

/// The one grammar of durations and sizes (control language, plans, command
/// line): every accepted form with its value, and every refused form.
@Suite struct UnitsGrammarTests {
    static let durations: [(String, UInt64)] = [
        ("1ns", 1), ("1us", 1_000), ("1ms", 1_000_000), ("1s", 1_000_000_000), ("1m", 60_000_000_000),
        ("1h", 3_600_000_000_000), ("1NS", 1), ("1Us", 1_000), ("1mS", 1_000_000), ("1S", 1_000_000_000), ("1M", 60_000_000_000),
        ("1H", 3_600_000_000_000), ("0s", 0), ("00s", 0), ("007ms", 7_000_000), ("1.s", 1_000_000_000), (".5s", 500_000_000),
        ("0.001s", 1_000_000), ("1.5us", 1_500), ("2.500000000s", 2_500_000_000), ("0.000000001s", 1),
        ("9223372036854775807ns", UInt64(Int64.max)), ("2562047h", 2_562_047 * 3_600_000_000_000),
    ]

    @Test(arguments: durations)
    func acceptedDurations(_ text: String, _ ns: UInt64) {
        #expect(parseDuration(text) == ns)
        #expect(parseDuration(text[...]) == ns)
    }

    @Test(arguments: [
        "", " ", "s", ".", ".s", "1", "1.5", "1 s", " 1s", "1s ", "1s\n", "+1s", "-1s", "1e3ms", "0x10s", "1_000ms", "1,5s",
        "1.2.3s", "1..2s", "1sec", "1min", "1d", "1mss", "1ss", "1ms1", "1.5ns", "0.0000000001s", "9223372036854775808ns",
        "2562048h", "99999999999999999999ns", "١s", "1µs", "½s",
    ])
    func refusedDurations(_ text: String) {
        #expect(parseDuration(text) == nil)
    }

    static let sizes: [(String, Int64)] = [
        ("0", 0), ("512", 512), ("512b", 512), ("512B", 512), ("1k", 1024), ("1K", 1024), ("1kb", 1024), ("1KB", 1024),
        ("1KiB", 1024), ("1kib", 1024), ("1m", 1 << 20), ("1MiB", 1 << 20), ("1g", 1 << 30), ("1GB", 1 << 30), ("1t", 1 << 40),
        ("1TiB", 1 << 40), ("1.5G", 3 << 29), ("0.5k", 512), (".5K", 512), ("1.", 1), ("2.0", 2), ("1.000G", 1 << 30),
        ("9223372036854775807", Int64.max), ("8388607T", 8_388_607 << 40), ("007K", 7 << 10),
    ]

    @Test(arguments: sizes)
    func acceptedSizes(_ text: String, _ bytes: Int64) {
        #expect(parseSize(text) == bytes)
        #expect(parseSize(text[...]) == bytes)
    }

    @Test(arguments: [
        "", " ", "K", "B", "iB", "1iB", ".", ".K", "1.5", "0.3K", "1 K", " 1K", "1K ", "+1K", "-1K", "1e3", "0x10", "1_024",
        "1,5G", "1.2.3M", "1E", "1P", "1KK", "1kbb", "1KiBB", "1Ki", "1bit", "9223372036854775808", "8388608T",
        "99999999999999999999", "١K",
    ])
    func refusedSizes(_ text: String) {
        #expect(parseSize(text) == nil)
    }
}
