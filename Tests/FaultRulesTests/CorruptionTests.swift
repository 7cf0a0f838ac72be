@testable import FaultRules
import Testing

// `corrupt read|write [bytes=N] [pattern=flip|zero|random]`: the grammar, the
// choice of bytes, the rule engine's seeded draw and the event fields.

@Suite struct CorruptGrammarTests {
    @Test(arguments: [
        "corrupt read", "corrupt write", "corrupt writeback", "corrupt syncwrite", "corrupt read,write",
        "corrupt read bytes=1 path=*.sst prob=0.01 seed=3", "corrupt write bytes=3 path=f",
        "corrupt read pattern=zero", "corrupt write pattern=random seed=9 bytes=4K",
        "corrupt read seed=5", "CORRUPT READ PATTERN=FLIP BYTES=2", "corrupt write offset=4096-8192 count=1 id=c1",
        "corrupt read comm=postgres pid=7 after=2 every=3",
    ])
    func roundTrips(_ line: String) throws {
        let rule = try #require(parseRule(line))
        #expect(parseRule(rule.description) == rule, "\(rule.description)")
    }

    @Test func parsedValuesAndCanonicalText() throws {
        let plain = try #require(parseRule("corrupt read"))
        #expect(plain.action == .corrupt(bytes: 1, pattern: .flip))
        #expect(plain.ops == .of(.read))
        #expect(plain.description == "corrupt read")  // bytes=1 and pattern=flip are the defaults

        let full = try #require(parseRule("corrupt write pattern=RANDOM bytes=4K seed=9 path=*.db"))
        #expect(full.action == .corrupt(bytes: 4096, pattern: .random))
        #expect(full.ops == .write)
        #expect(full.seed == 9 && full.probability == nil)
        #expect(full.description == "corrupt write path=*.db seed=9 bytes=4K pattern=random")

        #expect(parseRule("corrupt read bytes=1 pattern=flip")?.description == "corrupt read")
        #expect(parseRule("corrupt read bytes=2 pattern=zero")?.description == "corrupt read bytes=2 pattern=zero")
        #expect(parseRule("corrupt read bytes=1 path=*.sst prob=0.01 seed=3")?.description
                == "corrupt read path=*.sst prob=0.01 seed=3")
        #expect(parseRule("corrupt writeback")?.ops == .of(.writeback))
    }

    @Test(arguments: [
        // Ops that carry no data, named at the op word.
        GrammarTests.Malformed(text: "corrupt fsync", line: 1, column: 9, mentions: "corrupt only applies to ops that carry data (read, write, writeback, syncwrite); \"fsync\" does not"),
        .init(text: "corrupt read,open", line: 1, column: 14, mentions: "\"open\" does not"),
        .init(text: "corrupt getattr", line: 1, column: 9, mentions: "unknown operation \"getattr\""),
        .init(text: "corrupt all", line: 1, column: 9, mentions: "\"all\" names ops that do not"),
        .init(text: "corrupt copy_file_range", line: 1, column: 9, mentions: "\"copy_file_range\" does not"),
        .init(text: "corrupt write,flush bytes=2", line: 1, column: 15, mentions: "\"flush\" does not"),
        // An errno: only fail takes one.
        .init(text: "corrupt read EIO", line: 1, column: 14, mentions: "unexpected errno \"EIO\": only fail takes an errno, not corrupt"),
        .init(text: "corrupt write 5 bytes=1", line: 1, column: 15, mentions: "only fail takes an errno"),
        // Bad values.
        .init(text: "corrupt read bytes=0", line: 1, column: 20, mentions: "bad bytes \"0\"; corrupt changes 1 or more bytes"),
        .init(text: "corrupt read bytes=x", line: 1, column: 20, mentions: "bad bytes \"x\""),
        .init(text: "corrupt read pattern=invert", line: 1, column: 22, mentions: "bad pattern \"invert\"; expected one of flip, zero, random"),
        .init(text: "corrupt read pattern=flip pattern=zero", line: 1, column: 27, mentions: "repeated key \"pattern\""),
        .init(text: "corrupt read timeout=1s", line: 1, column: 14, mentions: "timeout= only applies to stall"),
        .init(text: "corrupt", line: 1, column: 8, mentions: "missing operations"),
        // pattern= belongs to corrupt alone.
        .init(text: "short write pattern=zero", line: 1, column: 13, mentions: "pattern= only applies to corrupt, not short"),
        .init(text: "fail read EIO pattern=flip", line: 1, column: 15, mentions: "pattern= only applies to corrupt"),
    ])
    func refusals(_ bad: GrammarTests.Malformed) throws {
        let error = try #require(parseFailure(bad.text))
        #expect(error.line == bad.line)
        #expect(error.column == bad.column, "\(error)")
        #expect(error.message.contains(bad.mentions), "\(error)")
    }
}

@Suite struct CorruptBlockModeTests {
    @Test func blockModeRewritesCorruptLinesLikeOthers() throws {
        let request = try BlockRuleRewriter.parse("corrupt read bytes=2 sectors=8-15 seed=4")
        #expect(request.words == ["corrupt", "read", "bytes=2", "seed=4"])
        let line = BlockRuleRewriter.line(request, imageName: "disk.img", ranges: BlockRuleRewriter.sectorRange(first: 8, last: 15))
        #expect(line == "corrupt read bytes=2 seed=4 path=disk.img ranges=4K-8K")
        #expect(parseRule(line)?.action == .corrupt(bytes: 2, pattern: .flip))
        #expect(try BlockRuleRewriter.parse("corrupt write file=pg_wal/*").fileGlob == "pg_wal/*")
    }
}

@Suite struct CorruptionChoiceTests {
    func corrupted(_ data: [UInt8], bytes: Int64, _ pattern: CorruptionPattern, seed: UInt64) -> ([UInt8], Corruption.Outcome) {
        var copy = data
        let outcome = copy.withUnsafeMutableBytes { Corruption.apply(to: $0, bytes: bytes, pattern: pattern, seed: seed) }
        return (copy, outcome)
    }

    /// Positions where two buffers differ.
    func differences(_ a: [UInt8], _ b: [UInt8]) -> [Int] { a.indices.filter { a[$0] != b[$0] } }

    let text = Array("the quick brown fox jumps over the lazy dog, 0123456789".utf8)

    @Test(arguments: CorruptionPattern.allCases, [1, 3, 17] as [Int64])
    func changesExactlyTheChosenBytes(_ pattern: CorruptionPattern, _ bytes: Int64) {
        let (out, outcome) = corrupted(text, bytes: bytes, pattern, seed: 42)
        let changed = differences(text, out)
        #expect(changed.count == Int(bytes))
        #expect(outcome.changed == Int(bytes))
        #expect(outcome.firstPositions == Array(changed.prefix(Corruption.shownPositions)))
        for i in changed {
            switch pattern {
            case .flip: #expect(out[i] == ~text[i])
            case .zero: #expect(out[i] == 0)
            case .random: #expect(out[i] != text[i])
            }
        }
    }

    @Test(arguments: CorruptionPattern.allCases)
    func theSameSeedChangesTheSameBytesTheSameWay(_ pattern: CorruptionPattern) {
        let data = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 1) }
        let first = corrupted(data, bytes: 5, pattern, seed: 7)
        #expect(corrupted(data, bytes: 5, pattern, seed: 7) == first)
        // Other seeds choose other bytes (for 5 of 4096, all the same would be a broken generator).
        let others = (8..<16).map { corrupted(data, bytes: 5, pattern, seed: $0).1.firstPositions }
        #expect(others.contains { $0 != first.1.firstPositions })
    }

    /// The choice pinned: a change of algorithm changes what a published seed does.
    @Test func aPinnedSeedKeepsItsChoice() {
        let data = [UInt8](repeating: 0xAA, count: 64)
        let (out, outcome) = corrupted(data, bytes: 3, .flip, seed: 3)
        #expect(outcome == Corruption.Outcome(changed: 3, firstPositions: [7, 39, 44]))
        #expect(differences(data, out) == [7, 39, 44])
    }

    @Test(arguments: CorruptionPattern.allCases)
    func moreBytesThanDataChangesAllOfIt(_ pattern: CorruptionPattern) {
        let data: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
        let (out, outcome) = corrupted(data, bytes: 1 << 30, pattern, seed: 1)
        #expect(differences(data, out) == Array(0..<10))
        #expect(outcome.changed == 10)
        #expect(outcome.firstPositions == Array(0..<8))  // bounded
    }

    @Test func zeroChoosesOnlyBytesThatAreNotZero() {
        var data = [UInt8](repeating: 0, count: 1000)
        for i in [3, 500, 999] { data[i] = 0x5A }
        let (out, outcome) = corrupted(data, bytes: 2, .zero, seed: 11)
        #expect(outcome.changed == 2)
        #expect(differences(data, out).count == 2)
        #expect(differences(data, out).allSatisfy { [3, 500, 999].contains($0) })
        // Fewer candidates than asked: all of them, and the count says so.
        let (all, allOutcome) = corrupted(data, bytes: 10, .zero, seed: 11)
        #expect(allOutcome == Corruption.Outcome(changed: 3, firstPositions: [3, 500, 999]))
        #expect(all == [UInt8](repeating: 0, count: 1000))
        // Nothing to zero: nothing changes.
        #expect(corrupted([0, 0, 0], bytes: 1, .zero, seed: 1).1.changed == 0)
    }

    @Test func emptyDataChangesNothing() {
        for pattern in CorruptionPattern.allCases {
            #expect(corrupted([], bytes: 1, pattern, seed: 1).1 == Corruption.Outcome(changed: 0, firstPositions: []))
        }
    }

    /// Both halves of the sampler (choosing the changed bytes, or the spared
    /// ones when most change) give exactly `bytes` distinct bytes.
    @Test(arguments: [1, 2, 31, 32, 33, 63, 64] as [Int64])
    func everyCountIsExact(_ bytes: Int64) {
        let data = [UInt8](repeating: 0x0F, count: 64)
        for seed in 0..<20 as Range<UInt64> {
            let (out, outcome) = corrupted(data, bytes: bytes, .flip, seed: seed)
            #expect(differences(data, out).count == Int(bytes))
            #expect(outcome.changed == Int(bytes))
        }
    }

    @Test func everyPositionCanBeChosen() {
        let data = [UInt8](repeating: 1, count: 16)
        var seen = Set<Int>()
        for seed in 0..<400 as Range<UInt64> { seen.formUnion(corrupted(data, bytes: 1, .flip, seed: seed).1.firstPositions) }
        #expect(seen == Set(0..<16))
    }
}

@Suite struct CorruptEngineAndEventTests {
    let read = RequestInfo(op: .read, inode: 7, offset: 0, length: 4096, pid: 100)

    @Test func theDecisionCarriesTheRulesNextDrawReproducibly() {
        func seeds(_ text: String) -> [UInt64] {
            let engine = makeEngine(text)
            return (0..<4).map { _ in engine.decide(read, FixedDetails())?.corruptionSeed ?? 0 }
        }
        let a = seeds("corrupt read seed=3")
        #expect(a == seeds("corrupt read seed=3"))
        #expect(Set(a).count == 4, "each request draws anew: \(a)")
        #expect(a != seeds("corrupt read seed=4"))
        #expect(makeEngine("fail read EIO").decide(read, FixedDetails())?.corruptionSeed == 0)
    }

    @Test func resetCountersRestartsTheDraws() {
        let engine = makeEngine("corrupt read seed=3")
        let first = engine.decide(read, FixedDetails())?.corruptionSeed
        engine.resetCounters()
        #expect(engine.decide(read, FixedDetails())?.corruptionSeed == first)
    }

    @Test func theEventNamesWhatChanged() throws {
        let event = InjectionEvent(timeNs: 1, ruleID: "r1", action: .corrupt, op: .read, path: "db/1.sst", inode: 9,
                                   offset: 8192, length: 4096, pid: 77, comm: "db", changed: 3,
                                   changedOffsets: [8200, 9000, 12000])
        let line = event.jsonLine()
        #expect(line == #"{"time_ns":1,"rule":"r1","action":"corrupt","op":"read","path":"db/1.sst","inode":9,"offset":8192,"length":4096,"errno":0,"errno_name":null,"pid":77,"comm":"db","writeback":false,"changed":3,"changed_offsets":[8200,9000,12000]}"# + "\n")
        #expect(try InjectionEvent.decode(line) == event)
        #expect(InjectionEvent.Action(FaultAction.corrupt(bytes: 1, pattern: .flip)) == .corrupt)
    }

    @Test func otherActionsHaveNoCorruptionFields() throws {
        let line = InjectionEvent(timeNs: 1, ruleID: "r1", action: .fail, op: .read, errno: 5).jsonLine()
        #expect(!line.contains("changed"))
        let withField = line.replacingFirst(#""writeback":false"#, with: #""writeback":false,"changed":1"#)
        #expect(throws: JSONRecordError.unknownKey("changed")) { try InjectionEvent.decode(withField) }
    }

    @Test(arguments: [
        (#","changed":3"#, "", JSONRecordError.missingKey("changed")),
        (#","changed_offsets":[8200]"#, "", .missingKey("changed_offsets")),
        (#""changed":3"#, #""changed":-1"#, .badValue("changed")),
        (#""changed_offsets":[8200]"#, #""changed_offsets":8200"#, .badValue("changed_offsets")),
        (#""changed_offsets":[8200]"#, #""changed_offsets":[-1]"#, .badValue("changed_offsets")),
        (#""changed_offsets":[8200]"#, #""changed_offsets":["8200"]"#, .badValue("changed_offsets")),
    ])
    func corruptLinesMustSayWhatChanged(_ old: String, _ new: String, _ expected: JSONRecordError) {
        let good = InjectionEvent(timeNs: 1, ruleID: "r1", action: .corrupt, op: .syncwrite, offset: 8192, length: 10,
                                  changed: 3, changedOffsets: [8200]).jsonLine()
        let text = good.replacingFirst(old, with: new)
        #expect(text != good)
        #expect(throws: expected) { try InjectionEvent.decode(text) }
    }
}
