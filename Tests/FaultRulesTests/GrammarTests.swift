@testable import FaultRules
import Testing

@Suite struct GrammarTests {
    static let validLines = [
        "fail writeback ENOSPC path=*.wal count=1",
        "delay 200ms write", "delay write 200ms prob=0.1 seed=7", "delay 2s fsync", "delay 1.5s flush", "delay 100us read", "delay 1m open",
        "stall fsync", "stall write timeout=5s",
        "drop write", "drop writeback path=**/*.wal", "drop syncwrite",
        "short write", "short syncwrite bytes=100", "short writeback bytes=4K",
        "fail write,writeback,syncwrite,flush,fsync,fdatasync,fsyncdir,create,mkdir,mknod,symlink,link,rename,unlink,rmdir,truncate,setattr,fallocate,copy_file_range,setxattr,open,read EIO",
        "fail all 28", "fail write enospc", "fail write EWOULDBLOCK", "fail write EDEADLOCK",
        "fail write ENOTSUP", "fail write EHWPOISON", "fail write 511",
        "fail write EIO prob=0.25 seed=7", "fail write EIO prob=1", "fail write EIO prob=0.5",
        "fail write EIO after=10 every=3 count=5", "fail write EIO after=0",
        "fail write EIO offset=1M-2M", "fail write EIO offset=4096-", "fail write EIO offset=0-1",
        "fail write EIO comm=postgres pid=42", "fail write EIO id=my-rule.1_x",
        "fail write EIO path=/abs/x", "fail fsyncdir EIO path=pg_wal/**", "fail truncate EFBIG",
        "fail setattr EPERM", "FAIL WRITE EIO COUNT=1", "stall fsync timeout=1h",
        "  fail write EIO   # with a comment", "fail write EIO\r",
    ]

    @Test(arguments: validLines)
    func validLineRoundTrips(_ line: String) throws {
        let rule = try #require(parseRule(line))
        #expect(parseRule(rule.description) == rule, "\(rule.description)")
    }

    @Test func parsedValues() throws {
        let wal = try #require(parseRule("fail writeback ENOSPC path=*.wal count=1"))
        #expect(wal.action == .fail(errno: 28))
        #expect(wal.ops == .of(.writeback))
        #expect(wal.path?.pattern == "*.wal")
        #expect(wal.count == 1)
        #expect(wal.description == "fail writeback ENOSPC path=*.wal count=1")

        #expect(parseRule("delay 1.5s flush")?.action == .delay(nanoseconds: 1_500_000_000))
        #expect(parseRule("delay 1.5s flush")?.description == "delay flush 1500ms")
        #expect(parseRule("delay flush 1.5s") == parseRule("delay 1.5s flush"))
        #expect(parseRule("stall fsync timeout=5s")?.action == .stall(timeoutNanoseconds: 5_000_000_000))
        #expect(parseRule("stall fsync")?.action == .stall(timeoutNanoseconds: nil))
        #expect(parseRule("short write bytes=4K")?.action == .short(bytes: 4096))
        #expect(parseRule("short write")?.action == .short(bytes: nil))
        #expect(parseRule("fail write EIO path=/abs/x")?.path?.pattern == "abs/x")
        #expect(parseRule("fail write EIO offset=1M-2M")?.offsetRange == ByteRange(1 << 20, 2 << 20))
        #expect(parseRule("fail write EIO offset=4096-")?.offsetRange == ByteRange(4096, nil))
        #expect(parseRule("fail write EWOULDBLOCK")?.description == "fail write EAGAIN")
        #expect(parseRule("fail all 28")?.description == "fail all ENOSPC")
        #expect(parseRule("fail write,fsync,setattr EIO")?.ops == OpSet([.writeback, .syncwrite, .fsync, .fdatasync, .setattr, .truncate]))
        #expect(parseRule("fail truncate EIO")?.ops == .of(.truncate))
        #expect(parseRule("FAIL Write,FSYNC eio")?.description == "fail write,fsync EIO")
        #expect(parseRule("fail write EIO comm=postgres pid=42")?.pid == 42)
    }

    @Test func canonicalOpsText() {
        #expect(OpSet.all.canonicalText == "all")
        #expect(OpSet.write.canonicalText == "write")
        #expect(OpSet([.syncwrite, .fsync]).canonicalText == "syncwrite,fsync-only")
        #expect(OpSet([.syncwrite, .fsync, .fdatasync]).canonicalText == "syncwrite,fsync")
        #expect(OpSet([.truncate, .setattr, .read]).canonicalText == "setattr,read")
        #expect(OpSet([.truncate, .copyFileRange]).canonicalText == "truncate,copy_file_range")
    }

    @Test func fsyncWords() throws {
        #expect(parseRule("fail fsync EIO")?.ops == OpSet([.fsync, .fdatasync]))
        #expect(parseRule("fail fsync-only EIO")?.ops == OpSet([.fsync]))
        #expect(parseRule("fail fdatasync EIO")?.ops == OpSet([.fdatasync]))
        #expect(parseRule("fail fsync-only,fdatasync EIO")?.description == "fail fsync EIO")
        #expect(parseRule("fail fsync-only EIO")?.description == "fail fsync-only EIO")
        #expect(parseRule("fail flush,fsync,fsyncdir EIO")?.description == "fail flush,fsync,fsyncdir EIO")
    }

    @Test func capacityTakesDecimalSizes() throws {
        #expect(try parseControl("capacity 1.5G").get() == [.capacity(bytes: 3 << 29)])
        #expect(parseFailure("capacity 1.5")?.message.contains("bad capacity") == true)
    }

    @Test func shownErrorsAreEscapedAndCut() throws {
        let long = "fail " + String(repeating: "x", count: 5000) + "\u{1b}[31m EIO"
        let error = try #require(parseFailure(long))
        let shown = error.shownText
        #expect(shown.count < 260, "\(shown.count) characters")
        #expect(shown.hasPrefix("line 1, column "))
        #expect(shown.hasSuffix(" more characters)"))
        #expect(printableExcerpt("a\nb\tc\u{1b}d\u{7f}", limit: 200) == "a\\nb\\tc\\u{1b}d\\u{7f}")
        #expect(printableExcerpt("abcdef", limit: 3) == "abc... (3 more characters)")
        #expect(!printableExcerpt(long, limit: 10_000).contains("\u{1b}"))
    }

    @Test func otherCommands() throws {
        let text = """
            clear
            clear r1
            release   # everything
            release r2
            capacity 64M
            capacity 1G
            capacity 4096
            capacity 512K
            capacity 2GiB
            capacity off

            reset-counters
            """
        let expected: [ControlCommand] = [
            .clear(id: nil), .clear(id: "r1"), .release(id: nil), .release(id: "r2"),
            .capacity(bytes: 64 << 20), .capacity(bytes: 1 << 30), .capacity(bytes: 4096),
            .capacity(bytes: 512 << 10), .capacity(bytes: 2 << 30), .capacity(bytes: nil),
            .resetCounters,
        ]
        #expect(try parseControl(text).get() == expected)
    }

    @Test func blankAndCommentOnlyTextIsEmpty() throws {
        #expect(try parseControl("").get() == [])
        #expect(try parseControl("\n  \n# nothing here\r\n\t# nor here\n").get() == [])
    }

    struct Malformed: CustomTestStringConvertible, Sendable {
        let text: String
        let line: Int
        let column: Int
        let mentions: String
        var testDescription: String { text }
    }

    static let malformed: [Malformed] = [
        .init(text: "explode write EIO", line: 1, column: 1, mentions: "unknown command \"explode\""),
        .init(text: "fail wrtie EIO", line: 1, column: 6, mentions: "unknown operation \"wrtie\"; expected one of write, writeback, syncwrite"),
        .init(text: "fail write", line: 1, column: 11, mentions: "missing errno"),
        .init(text: "fail write count=1", line: 1, column: 11, mentions: "missing errno"),
        .init(text: "delay 10ms write EIO", line: 1, column: 18, mentions: "only fail takes an errno"),
        .init(text: "drop write 28", line: 1, column: 12, mentions: "only fail takes an errno"),
        .init(text: "fail write 0", line: 1, column: 12, mentions: "out of range"),
        .init(text: "fail write 512", line: 1, column: 12, mentions: "out of range"),
        .init(text: "fail write -1", line: 1, column: 12, mentions: "out of range"),
        .init(text: "fail write 99999999999999999999", line: 1, column: 12, mentions: "unknown errno"),
        .init(text: "fail write EFOO", line: 1, column: 12, mentions: "unknown errno \"EFOO\""),
        .init(text: "delay 10parsecs write", line: 1, column: 7, mentions: "bad duration \"10parsecs\""),
        .init(text: "delay write", line: 1, column: 12, mentions: "missing duration"),
        .init(text: "delay write soon", line: 1, column: 13, mentions: "bad duration \"soon\""),
        .init(text: "delay 10 write", line: 1, column: 7, mentions: "bad duration"),
        .init(text: "delay 0s write", line: 1, column: 7, mentions: "bad duration"),
        .init(text: "delay", line: 1, column: 6, mentions: "missing operations"),
        .init(text: "stall fsync timeout=soon", line: 1, column: 21, mentions: "bad duration"),
        .init(text: "capacity 12Q", line: 1, column: 10, mentions: "bad capacity \"12Q\""),
        .init(text: "capacity", line: 1, column: 9, mentions: "missing size"),
        .init(text: "capacity 1M 2M", line: 1, column: 13, mentions: "unexpected \"2M\""),
        .init(text: "short write bytes=1X", line: 1, column: 19, mentions: "bad bytes"),
        .init(text: "fail write EIO prob=0", line: 1, column: 21, mentions: "bad prob"),
        .init(text: "fail write EIO prob=1.5", line: 1, column: 21, mentions: "bad prob"),
        .init(text: "fail write EIO prob=x", line: 1, column: 21, mentions: "bad prob"),
        .init(text: "fail write EIO prob=nan", line: 1, column: 21, mentions: "bad prob"),
        .init(text: "fail write EIO seed=3", line: 1, column: 16, mentions: "seed= only applies together with prob="),
        .init(text: "fail write EIO color=red", line: 1, column: 16, mentions: "unknown key \"color\""),
        .init(text: "fail write EIO count=1 count=2", line: 1, column: 24, mentions: "repeated key \"count\""),
        .init(text: "fail write EIO count=0", line: 1, column: 22, mentions: "bad count"),
        .init(text: "fail write EIO every=0", line: 1, column: 22, mentions: "bad every"),
        .init(text: "fail write EIO after=-1", line: 1, column: 22, mentions: "bad after"),
        .init(text: "fail write EIO pid=0", line: 1, column: 20, mentions: "bad pid"),
        .init(text: "fail write EIO comm=a-very-long-process-name", line: 1, column: 21, mentions: "bad comm"),
        .init(text: "fail write EIO id=no/slash", line: 1, column: 19, mentions: "bad id"),
        .init(text: "fail write EIO path=a//b", line: 1, column: 21, mentions: "bad path pattern"),
        .init(text: "fail write EIO path=a**", line: 1, column: 21, mentions: "bad path pattern"),
        .init(text: "fail write EIO stray", line: 1, column: 16, mentions: "expected key=value"),
        .init(text: "drop fsync", line: 1, column: 6, mentions: "drop only applies to writes; \"fsync\""),
        .init(text: "drop write,fsync", line: 1, column: 12, mentions: "\"fsync\" is not one"),
        .init(text: "short all", line: 1, column: 7, mentions: "short only applies to writes"),
        .init(text: "delay 1s write timeout=5s", line: 1, column: 16, mentions: "timeout= only applies to stall"),
        .init(text: "drop write bytes=10", line: 1, column: 12, mentions: "bytes= only applies to short"),
        .init(text: "fail write EIO offset=2M-1M", line: 1, column: 23, mentions: "bad offset range"),
        .init(text: "fail write EIO offset=1M-1M", line: 1, column: 23, mentions: "bad offset range"),
        .init(text: "fail write EIO offset=4096", line: 1, column: 23, mentions: "bad offset range"),
        .init(text: "fail", line: 1, column: 5, mentions: "missing operations"),
        .init(text: "fail ,write EIO", line: 1, column: 6, mentions: "empty operation"),
        .init(text: "fail write, EIO", line: 1, column: 12, mentions: "empty operation"),
        .init(text: "fail write,,fsync EIO", line: 1, column: 12, mentions: "empty operation"),
        .init(text: "clear a b", line: 1, column: 9, mentions: "unexpected \"b\""),
        .init(text: "release a%", line: 1, column: 9, mentions: "bad id"),
        .init(text: "reset-counters now", line: 1, column: 16, mentions: "unexpected \"now\""),
        .init(text: "fail write EIO\n\ndrop fsync\nfail write EIO", line: 3, column: 6, mentions: "drop only applies"),
    ]

    @Test(arguments: malformed)
    func malformedTextIsRefusedAtTheRightPlace(_ bad: Malformed) throws {
        let error = try #require(parseFailure(bad.text))
        #expect(error.line == bad.line)
        #expect(error.column == bad.column)
        #expect(error.message.contains(bad.mentions), "\(error)")
        #expect(error.description == "line \(error.line), column \(error.column): \(error.message)")
    }

    @Test func errorMessageNamesTokenAndExpectation() throws {
        let error = try #require(parseFailure("fail wrtie EIO"))
        #expect(error.description.hasPrefix("line 1, column 6: unknown operation \"wrtie\"; expected one of write, writeback, syncwrite, flush,"))
    }

    @Test func columnsCountUnicodeScalars() throws {
        let error = try #require(parseFailure("fail write EIO path=日本 bogus"))
        #expect(error.column == 24)
    }
}

@Suite struct CrashCommandTests {
    @Test(arguments: [
        ("crash", CrashRequest()),
        ("CRASH", CrashRequest()),
        ("crash torn", CrashRequest(torn: true)),
        ("crash torn seed=7", CrashRequest(torn: true, seed: 7)),
        ("crash seed=18446744073709551615 torn sector=512", CrashRequest(torn: true, seed: .max, sectorSize: 512)),
        ("crash torn sector=4096  # comment", CrashRequest(torn: true, sectorSize: 4096)),
        ("crash seed=3", CrashRequest(seed: 3)),
    ])
    func parses(_ line: String, _ expected: CrashRequest) throws {
        #expect(try parseControl(line).get() == [.crash(expected)])
    }

    @Test(arguments: [
        ("crash sector=512", 7, "sector= only applies together with torn"),
        ("crash torn sector=1024", 19, "bad sector \"1024\"; expected sector=512 or sector=4096"),
        ("crash torn sector=", 19, "bad sector"),
        ("crash torn sector=4k", 19, "bad sector"),
        ("crash torn seed=-1", 17, "bad seed \"-1\""),
        ("crash torn seed=x", 17, "bad seed"),
        ("crash seed", 7, "missing value"),
        ("crash torn=1", 7, "torn takes no value"),
        ("crash torn torn", 12, "repeated \"torn\""),
        ("crash now", 7, "unexpected \"now\" after crash; expected torn, seed=N or sector=512|4096"),
    ])
    func refuses(_ line: String, _ column: Int, _ mentions: String) {
        guard let error = parseFailure(line) else { return }
        #expect(error.column == column, "\(error)")
        #expect(error.message.contains(mentions), "\(error)")
    }

    @Test func firstCrashFindsTheCommandAndWhere() {
        #expect(firstCrash(in: "fail write EIO\n  crash torn seed=2")?.line == 2)
        #expect(firstCrash(in: "fail write EIO\n  crash torn seed=2")?.column == 3)
        #expect(firstCrash(in: "fail write EIO\n  crash torn seed=2")?.request == CrashRequest(torn: true, seed: 2))
        #expect(firstCrash(in: "fail write EIO") == nil)
        #expect(firstCrash(in: "crash\nbogus") == nil)  // the text does not parse
    }

    @Test func theEngineHandsTheCrashToItsCaller() throws {
        let engine = RuleEngine(features: MountFeatures(writebackCache: true))
        #expect(try engine.apply(text: "crash torn").get() == [.crash(CrashRequest(torn: true))])
        #expect(engine.armedRuleCount == 0)
    }
}
