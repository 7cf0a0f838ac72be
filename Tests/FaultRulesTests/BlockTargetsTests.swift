@testable import FaultRules
import Testing

@Suite struct BlockTargetsTests {
    @Test func rangeSetMergesAndFindsOverlaps() {
        let set = ByteRangeSet([(8192, 12288), (0, 4096), (4096, 5000), (20000, 20000)])
        let pairs: [[Int64]] = set.ranges.map { [$0.lower, $0.upper] }
        #expect(pairs == [[0, 5000], [8192, 12288]])
        #expect(set.overlaps(offset: 4999, length: 1))
        #expect(!set.overlaps(offset: 5000, length: 3192))
        #expect(set.overlaps(offset: 5000, length: 3193))
        #expect(set.overlaps(offset: 12287, length: 0))
        #expect(!set.overlaps(offset: 12288, length: 4096))
        #expect(!set.overlaps(offset: -1, length: 4096))
        #expect(set.byteCount == 5000 + 4096)
    }

    @Test func rangesKeyRoundTrips() throws {
        let rule = try #require(parseRule("fail write EIO path=disk.img ranges=9217K-9473K,1M-2M,0-512"))
        #expect(rule.byteRanges == ByteRangeSet([(0, 512), (1 << 20, 2 << 20), (9217 << 10, 9473 << 10)]))
        #expect(rule.description == "fail write EIO path=disk.img ranges=0-512,1M-2M,9217K-9473K")
        #expect(parseRule(rule.description) == rule)
    }

    @Test(arguments: ["fail write EIO ranges=", "fail write EIO ranges=5-5", "fail write EIO ranges=1-2,", "fail write EIO ranges=x-2"])
    func badRangesAreRefused(_ line: String) {
        guard case .failure(let error) = parseControl(line) else {
            Issue.record("accepted: \(line)")
            return
        }
        #expect(error.description.contains("ranges"), "\(error.description)")
    }

    @Test func engineMatchesOnlyTheRanges() throws {
        let engine = RuleEngine(features: MountFeatures(writebackCache: true))
        _ = engine.apply(text: "fail write EIO ranges=4K-8K,1M-2M\n")
        let details = FixedDetails(filePath: "disk.img")
        #expect(engine.decide(RequestInfo(op: .syncwrite, offset: 4096, length: 512), details) != nil)
        #expect(engine.decide(RequestInfo(op: .syncwrite, offset: 8192, length: 4096), details) == nil)
        #expect(engine.decide(RequestInfo(op: .syncwrite, offset: (1 << 20) - 512, length: 1024), details) != nil)
    }

    @Test func emptyRangesReadNoneAndMatchNothing() throws {
        let rule = try #require(parseRule("fail write EIO path=disk.img ranges=none"))
        #expect(rule.byteRanges == ByteRangeSet([]))
        #expect(rule.description == "fail write EIO path=disk.img ranges=none")
        #expect(!ByteRangeSet([]).overlaps(offset: 0, length: 1 << 30))
    }

    @Test func replacedRangesKeepTheCounters() throws {
        let engine = RuleEngine(features: MountFeatures(writebackCache: true))
        _ = engine.apply(text: "fail write EIO ranges=none id=f count=2\n")
        let details = FixedDetails(filePath: "disk.img")
        #expect(engine.decide(RequestInfo(op: .syncwrite, offset: 4096, length: 512), details) == nil)
        #expect(engine.replaceByteRanges(ofRule: "f", with: ByteRangeSet([(4096, 8192)])))
        #expect(engine.decide(RequestInfo(op: .syncwrite, offset: 4096, length: 512), details) != nil)
        #expect(engine.replaceByteRanges(ofRule: "f", with: ByteRangeSet([(0, 8192)])))
        #expect(engine.renderRules().contains("ranges=0-8K count=2  # matched=1 hits=1"), "\(engine.renderRules())")
        #expect(!engine.replaceByteRanges(ofRule: "gone", with: ByteRangeSet([])))
    }

    @Test func stateNamesAreDistinctAndReadable() {
        #expect(blockStateName(forTarget: "/srv/db") == "srv-db")
        #expect(blockStateName(forTarget: "/srv/a-b") == "srv-a%2Db")
        #expect(blockStateName(forTarget: "/srv/a-b") != blockStateName(forTarget: "/srv/a/b"))
        #expect(blockStateName(forTarget: "/a b") == "a%20b")
        #expect(blockStateName(forTarget: "/") == "-")
    }

    @Test func linesAreRewrittenForTheImage() throws {
        let sectors = try BlockRuleRewriter.parse("fail write EIO sectors=2048-4095 count=1")
        #expect(sectors.words == ["fail", "write", "EIO", "count=1"])
        let line = BlockRuleRewriter.line(sectors, imageName: "disk.img",
                                          ranges: BlockRuleRewriter.sectorRange(first: 2048, last: 4095))
        #expect(line == "fail write EIO count=1 path=disk.img ranges=1M-2M")

        let flush = try BlockRuleRewriter.parse("fail flush EIO")
        #expect(BlockRuleRewriter.line(flush, imageName: "disk.img", ranges: nil) == "fail fsync EIO path=disk.img")
        let discard = try BlockRuleRewriter.parse("delay discard,write 10ms")
        #expect(discard.words[1] == "fallocate,write")

        let file = try BlockRuleRewriter.parse("fail read EIO file=base/16384/2619")
        #expect(file.fileGlob == "base/16384/2619" && file.words == ["fail", "read", "EIO"])
        #expect(try BlockRuleRewriter.parse("fail write EIO region=journal").region == "journal")
        for command in ["clear", "release r1", "capacity off"] {
            let passed = try BlockRuleRewriter.parse(command)
            #expect(BlockRuleRewriter.line(passed, imageName: "disk.img", ranges: nil) == command)
        }
    }

    @Test(arguments: [
        ("fail write EIO sectors=9-3", "sectors"), ("fail write EIO region=superblock", "region"),
        ("fail write EIO file=", "file="), ("fail write EIO offset=0-4K", "image"),
        ("fail write EIO path=*.img", "image"), ("fail write EIO sectors=0-1 file=a", "one of"),
        ("fail flush EIO sectors=0-7", "flush"),
    ])
    func badBlockKeysAreRefused(_ line: String, _ reason: String) {
        #expect(throws: BlockRuleError.self) { try BlockRuleRewriter.parse(line) }
        do {
            _ = try BlockRuleRewriter.parse(line)
        } catch {
            #expect(error.description.contains(reason), "\(error.description)")
        }
    }

    @Test func debugfsExtentsAreImageBytes() throws {
        let text = """
            Inode: 8   Type: regular    Mode:  0600   Flags: 0x80000
            Size of extra inode fields: 32
            EXTENTS:
            (0-1023):1234-2257, (1024-4095):5000-8071, (4096):9000
            """
        let set = try #require(BlockToolOutput.debugfsExtents(text, blockSize: 4096))
        let blocks: [[Int64]] = set.ranges.map { [$0.lower / 4096, $0.upper / 4096] }
        #expect(blocks == [[1234, 2258], [5000, 8072], [9000, 9001]])
        #expect(BlockToolOutput.debugfsExtents("no extents", blockSize: 4096) == nil)
        #expect(BlockToolOutput.number(after: "Block size:", in: "Inode count: 5\nBlock size:               1024\n") == 1024)
    }

    @Test func xfsLogPosition() throws {
        // logstart = AG 2, block 100, with agblklog 16.
        let text = "logstart = 131172\nblocksize = 4096\nagblocks = 25600\nagblklog = 15\nlogblocks = 1368\n"
        let ag: Int64 = 131172 >> 15, block: Int64 = 131172 & ((1 << 15) - 1)
        let first = (ag * 25600 + block) * 4096
        #expect(BlockToolOutput.xfsLog(text) == ByteRangeSet([(first, first + 1368 * 4096)]))
        #expect(BlockToolOutput.xfsLog("logstart = 0\nblocksize = 4096\nagblocks = 1\nagblklog = 1\nlogblocks = 1\n") == nil)
    }
}
