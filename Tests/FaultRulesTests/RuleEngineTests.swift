@testable import FaultRules
import Testing

@Suite struct RuleEngineTests {
    let write = RequestInfo(op: .syncwrite, inode: 7, offset: 0, length: 4096, pid: 100)

    @Test func nothingArmedMeansNoDecisionAndNoDetails() {
        let engine = makeEngine("fail fsync-only EIO path=*.wal")
        #expect(engine.armedOps == .of(.fsync))
        #expect(engine.decide(write, UnaskableDetails()) == nil)
    }

    @Test func firstMatchWins() {
        let engine = makeEngine("""
            fail write EIO id=a path=*.wal
            fail write ENOSPC id=b
            """)
        #expect(engine.decide(write, FixedDetails(filePath: "x.wal")) == Decision(ruleID: "a", action: .fail(errno: 5)))
        #expect(engine.decide(write, FixedDetails(filePath: "x.txt")) == Decision(ruleID: "b", action: .fail(errno: 28)))
        #expect(engine.renderRules().contains("id=b  # matched=1 hits=1"))  // b did not see x.wal
    }

    @Test func aRuleThatLetsARequestThroughLeavesItToLaterRules() {
        let engine = makeEngine("""
            fail write EIO id=a after=1
            delay 1s write id=b
            """)
        #expect(engine.decide(write, FixedDetails())?.ruleID == "b")
        #expect(engine.decide(write, FixedDetails())?.ruleID == "a")
    }

    @Test(arguments: [
        ("after=2 count=3", [2, 3, 4]),
        ("every=3", [2, 5, 8]),
        ("after=1 every=2", [2, 4, 6, 8]),
        ("every=3 count=2", [2, 5]),
        ("after=8", [8, 9]),
        ("count=1", [0]),
        ("", Array(0..<10)),
    ])
    func selection(_ options: String, _ expected: [Int]) {
        let engine = makeEngine("fail write EIO " + options)
        #expect(engine.selectedIndices(of: 10, write) == expected)
    }

    @Test func probabilityIsDeterministicPerSeed() {
        let first = makeEngine("fail write EIO prob=0.5 seed=42").selectedIndices(of: 200, write)
        let again = makeEngine("fail write EIO prob=0.5 seed=42").selectedIndices(of: 200, write)
        let other = makeEngine("fail write EIO prob=0.5 seed=43").selectedIndices(of: 200, write)
        #expect(first == again)
        #expect(first != other)
        #expect((70...130).contains(first.count))

        let defaultSeed = makeEngine("fail write EIO prob=0.5").selectedIndices(of: 200, write)
        #expect(defaultSeed == makeEngine("fail write EIO prob=0.5 seed=1").selectedIndices(of: 200, write))
    }

    @Test func resetCountersRestartsTheRandomSequence() {
        let engine = makeEngine("fail write EIO prob=0.3 seed=9")
        let first = engine.selectedIndices(of: 100, write)
        engine.resetCounters()
        #expect(engine.selectedIndices(of: 100, write) == first)
    }

    @Test func dormantRuleIsDisarmedAndResetRearmsIt() {
        let engine = makeEngine("fail fsync-only EIO count=1\nfail write EIO")
        let fsync = RequestInfo(op: .fsync, offset: -1, pid: 5)
        #expect(engine.armedOps == OpSet([.fsync, .writeback, .syncwrite]))
        #expect(engine.decide(fsync, FixedDetails()) != nil)
        #expect(engine.armedOps == .write)
        #expect(engine.decide(fsync, UnaskableDetails()) == nil)
        #expect(engine.renderRules().contains("fail fsync-only EIO id=r1 count=1  # matched=1 hits=1 dormant"))

        engine.resetCounters()
        #expect(engine.armedOps.contains(.fsync))
        #expect(engine.renderRules().contains("count=1  # matched=0 hits=0\n"))
        #expect(engine.decide(fsync, FixedDetails()) != nil)

        _ = engine.apply(text: "reset-counters")
        #expect(engine.armedOps.contains(.fsync))
    }

    @Test func pathGlobs() {
        let engine = makeEngine("""
            fail write EIO id=top path=*.wal
            fail write EIO id=deep path=**/*.db
            fail write EIO id=dir path=pg_wal/**
            """)
        func rule(for path: String) -> String? {
            engine.decide(write, FixedDetails(filePath: path))?.ruleID
        }
        #expect(rule(for: "x.wal") == "top")
        #expect(rule(for: "d/x.wal") == nil)
        #expect(rule(for: "x.db") == "deep")
        #expect(rule(for: "a/b/x.db") == "deep")
        #expect(rule(for: "pg_wal/000001") == "dir")
        #expect(rule(for: "pg_wal/archive/000001") == "dir")
        #expect(rule(for: "other/000001") == nil)
    }

    @Test func unknownPathNeverMatchesAPathRule() {
        let engine = makeEngine("fail write EIO path=**")
        #expect(engine.decide(write, FixedDetails(filePath: nil)) == nil)
        #expect(engine.decide(write, FixedDetails(filePath: "")) != nil)
    }

    @Test func offsetOverlap() {
        let engine = makeEngine("fail write EIO offset=4K-8K")
        func hit(_ offset: Int64, _ length: Int64) -> Bool {
            engine.decide(RequestInfo(op: .syncwrite, offset: offset, length: length, pid: 1), FixedDetails()) != nil
        }
        #expect(!hit(0, 4096))
        #expect(hit(4095, 2))
        #expect(hit(0, 1 << 20))
        #expect(hit(8191, 100))
        #expect(!hit(8192, 100))
        #expect(hit(5000, 0))       // zero length: the byte at offset
        #expect(!hit(-1, 0))        // no offset
        #expect(!hit(Int64.max - 1, Int64.max))  // no overflow trap

        let openEnded = makeEngine("fail write EIO offset=1M-")
        #expect(openEnded.decide(RequestInfo(op: .syncwrite, offset: 1 << 20, length: 1, pid: 1), FixedDetails()) != nil)
        #expect(openEnded.decide(RequestInfo(op: .syncwrite, offset: 0, length: 1 << 20, pid: 1), FixedDetails()) == nil)
    }

    @Test func callerFiltersNeverMatchRequestsWithoutCaller() {
        let byPid = makeEngine("fail write EIO pid=42")
        #expect(byPid.decide(RequestInfo(op: .syncwrite, pid: 42), FixedDetails()) != nil)
        #expect(byPid.decide(RequestInfo(op: .syncwrite, pid: 43), FixedDetails()) == nil)
        #expect(byPid.decide(RequestInfo(op: .writeback, pid: 0), UnaskableDetails()) == nil)
        // A thread (FUSE reports thread ids) of process 42.
        #expect(byPid.decide(RequestInfo(op: .syncwrite, pid: 4242), FixedDetails(threadGroup: 42)) != nil)
        #expect(byPid.decide(RequestInfo(op: .syncwrite, pid: 4243), FixedDetails(threadGroup: 41)) == nil)

        let byComm = makeEngine("fail write EIO comm=postgres")
        #expect(byComm.decide(RequestInfo(op: .syncwrite, pid: 9), FixedDetails(processName: "postgres")) != nil)
        #expect(byComm.decide(RequestInfo(op: .syncwrite, pid: 9), FixedDetails(processName: "psql")) == nil)
        #expect(byComm.decide(RequestInfo(op: .writeback, pid: 0), FixedDetails(processName: "postgres")) == nil)
    }

    /// Rules indexed by a literal first name and unindexed rules still act
    /// in their written order.
    @Test func indexedPathRulesKeepTheirOrder() {
        let engine = makeEngine("fail write EIO path=a/** id=a\nfail write ENOSPC id=any\nfail write EROFS path=b/x id=b")
        let write = RequestInfo(op: .syncwrite)
        #expect(engine.decide(write, FixedDetails(filePath: "a/x"))?.ruleID == "a")
        #expect(engine.decide(write, FixedDetails(filePath: "b/x"))?.ruleID == "any")
        #expect(engine.decide(write, FixedDetails(filePath: "c"))?.ruleID == "any")
        let reversed = makeEngine("fail write ENOSPC path=*.wal id=w\nfail write EIO path=d/** id=d")
        #expect(reversed.decide(write, FixedDetails(filePath: "d/x.wal"))?.ruleID == "d")  // *.wal: one name only
        #expect(reversed.decide(write, FixedDetails(filePath: "x.wal"))?.ruleID == "w")
        #expect(reversed.decide(write, FixedDetails(filePath: nil)) == nil)
        let many = makeEngine((1...1000).map { "fail write EIO path=dir\($0)/** id=r\($0)" }.joined(separator: "\n"))
        #expect(many.decide(write, FixedDetails(filePath: "dir777/f"))?.ruleID == "r777")
        #expect(many.decide(write, FixedDetails(filePath: "elsewhere")) == nil)
    }

    @Test func opGroups() {
        let engine = makeEngine("fail setattr EPERM id=s\nfail write EIO id=w")
        #expect(engine.decide(RequestInfo(op: .truncate), FixedDetails())?.ruleID == "s")
        #expect(engine.decide(RequestInfo(op: .setattr), FixedDetails())?.ruleID == "s")
        #expect(engine.decide(RequestInfo(op: .writeback), FixedDetails())?.ruleID == "w")
        #expect(engine.decide(RequestInfo(op: .read), UnaskableDetails()) == nil)
    }

    @Test func clearByIdAndClearAll() throws {
        let engine = makeEngine("fail write EIO id=a\nfail fsync-only EIO id=b\nfail read EIO")
        #expect(try engine.apply(text: "clear a").get() == [])
        #expect(engine.armedOps == OpSet([.fsync, .read]))
        #expect(!engine.renderRules().contains("id=a"))
        #expect(try engine.apply(text: "clear").get() == [])
        #expect(engine.armedOps == [])
        #expect(engine.renderRules() == "")
    }

    @Test func clearOfUnknownIdIsRefused() throws {
        let engine = makeEngine("fail write EIO id=a")
        let result = engine.apply(text: "# first line\nclear zzz")
        guard case .failure(let error) = result else {
            Issue.record("clear zzz was accepted")
            return
        }
        #expect(error.line == 2)
        #expect(error.column == 7)
        #expect(error.message.contains("no rule with id \"zzz\"; expected one of a"))
    }

    @Test func automaticIdsAreNeverReused() {
        let engine = makeEngine("fail write EIO\nfail fsync EIO id=r2\nfail read EIO")
        let text = engine.renderRules()
        #expect(text.contains("fail write EIO id=r1 "))
        #expect(text.contains("fail fsync EIO id=r2 "))
        #expect(text.contains("fail read EIO id=r3 "))
        _ = engine.apply(text: "clear\nfail flush EIO")
        #expect(engine.renderRules().hasPrefix("fail flush EIO id=r4 "))
    }

    @Test func duplicateIdIsRefusedAndNothingIsApplied() throws {
        let engine = makeEngine("fail write EIO id=a")
        let result = engine.apply(text: "fail fsync EIO id=b\n\nfail flush EIO id=a")
        guard case .failure(let error) = result else {
            Issue.record("duplicate id was accepted")
            return
        }
        #expect((error.line, error.column) == (3, 19))
        #expect(error.message.contains("duplicate id \"a\""))
        #expect(engine.armedOps == .write)

        let sameWrite = engine.apply(text: "fail fsync EIO id=c\nfail flush EIO id=c")
        #expect(throws: ParseError.self) { try sameWrite.get() }
    }

    @Test func aBadThirdLineAppliesNothing() {
        let engine = makeEngine("")
        let result = engine.apply(text: "fail write EIO id=a\ndelay 1s fsync\nfail wrtie EIO")
        guard case .failure(let error) = result else {
            Issue.record("accepted")
            return
        }
        #expect((error.line, error.column) == (3, 6))
        #expect(engine.armedOps == [])
        #expect(engine.renderRules() == "")
    }

    @Test func releaseCapacityAndResetArePassedBack() throws {
        let engine = makeEngine("stall fsync id=s")
        let passed = try engine.apply(text: "release s\nrelease\ncapacity 1G\ncapacity off\nreset-counters").get()
        #expect(passed == [.release(id: "s"), .release(id: nil),
                           .capacity(bytes: 1 << 30), .capacity(bytes: nil), .resetCounters])
        #expect(engine.armedOps == [])  // release removed the stall rule
    }

    @Test func releaseRemovesOnlyTheStallRulesItNames() throws {
        let engine = makeEngine("stall fsync id=s\nstall flush id=t\nfail write EIO id=f")
        _ = try engine.apply(text: "release s").get()
        #expect(engine.armedOps == OpSet([.flush, .writeback, .syncwrite]))
        _ = try engine.apply(text: "release").get()
        #expect(engine.armedOps == OpSet.write)
    }

    @Test func releaseAndClearOfAnUnknownIDAreBothErrors() throws {
        let engine = makeEngine("stall fsync-only id=s\nfail write EIO id=f")
        for text in ["release gone", "release f", "clear gone"] {
            guard case .failure(let error) = engine.apply(text: text) else {
                Issue.record("\(text) was accepted")
                continue
            }
            let id = text.split(separator: " ")[1]
            #expect(error.column == text.count - id.count + 1, "points at the id: \(error)")
            #expect(error.message.contains("no ") && error.message.contains("rule with id"), "\(error)")
        }
        #expect(engine.apply(text: "release f").failureMessage?.contains("expected one of s") == true)
        #expect(engine.armedOps == OpSet([.fsync, .writeback, .syncwrite]), "nothing changed")
    }

    @Test func clearingAStallRuleReleasesItsRequests() throws {
        let engine = makeEngine("stall fsync id=s\nstall flush id=t\nfail write EIO id=f")
        #expect(try engine.apply(text: "clear f").get() == [])
        #expect(try engine.apply(text: "clear s").get() == [.release(id: "s")])
        #expect(try engine.apply(text: "clear").get() == [.release(id: nil)])
        #expect(try engine.apply(text: "clear").get() == [], "no stall left: nothing to release")
    }

    @Test func fsyncCoversFdatasyncAndControlSaysSo() throws {
        let engine = makeEngine("fail fsync EIO id=both")
        #expect(engine.decide(RequestInfo(op: .fsync), FixedDetails()) != nil)
        #expect(engine.decide(RequestInfo(op: .fdatasync), FixedDetails()) != nil)
        #expect(engine.renderRules().contains("# note: fsync means fsync(2) and fdatasync(2); fsync-only or fdatasync names one of them"))
        let alone = makeEngine("fail fsync-only EIO id=one\nfail fdatasync EIO id=other path=x")
        #expect(alone.decide(RequestInfo(op: .fsync), FixedDetails())?.ruleID == "one")
        #expect(alone.decide(RequestInfo(op: .fdatasync), FixedDetails(filePath: "y")) == nil)
        #expect(!alone.renderRules().contains("# note"), "\(alone.renderRules())")
    }

    @Test func applyingCommandsDirectly() throws {
        let engine = RuleEngine(features: MountFeatures(writebackCache: false))
        let rule = Rule(action: .drop, ops: .write, path: PathGlob("*.log"))
        #expect(try engine.apply([.add(rule), .capacity(bytes: 10)]).get() == [.capacity(bytes: 10)])
        #expect(engine.decide(RequestInfo(op: .syncwrite), FixedDetails(filePath: "a.log")) == Decision(ruleID: "r1", action: .drop))

        let bad = engine.apply([.clear(id: "x"), .clear(id: "nope")])
        #expect(throws: ParseError.self) { try bad.get() }
        if case .failure(let error) = bad { #expect(error.line == 1) }
    }

    @Test func renderedRulesParseBackToTheSameRules() throws {
        let text = GrammarTests.validLines.joined(separator: "\n")
        let engine = makeEngine(text, writebackCache: false)
        let rendered = engine.renderRules()
        #expect(rendered.contains("# warning: "))
        let reparsed = try parseControl(rendered).get()
        let added = try parseControl(text).get()
        #expect(reparsed.count == added.count)
        for (original, again) in zip(added, reparsed) {
            guard case .add(var rule) = original, case .add(let rendered) = again else {
                Issue.record("\(again) should be the rule \(original)")
                continue
            }
            if rule.id == nil { rule.id = rendered.id }  // assigned by the engine
            #expect(rendered == rule)
        }
    }

    @Test func warnings() {
        func warnings(_ text: String, writebackCache: Bool) -> [Substring] {
            makeEngine(text, writebackCache: writebackCache).renderRules()
                .split(separator: "\n").filter { $0.hasPrefix("# warning: ") }
        }
        #expect(warnings("fail writeback EIO", writebackCache: false).first?.contains("no writeback cache") == true)
        #expect(warnings("fail write EIO", writebackCache: false).isEmpty)
        #expect(warnings("fail writeback EIO", writebackCache: true).isEmpty)
        #expect(warnings("fail flush ENOSYS", writebackCache: true).first?.contains("ENOSYS on flush") == true)
        #expect(warnings("fail fsync,read ENOSYS", writebackCache: true).count == 1)
        #expect(warnings("fail read ENOSYS", writebackCache: true).isEmpty)
        #expect(warnings("fail write EIO comm=pg", writebackCache: true).first?.contains("never match writeback") == true)
        #expect(warnings("fail syncwrite EIO comm=pg", writebackCache: true).isEmpty)
    }

    @Test func concurrentDecisionsCountEveryRequest() async {
        let engine = makeEngine("fail write EIO count=1000")
        await withTaskGroup(of: Int.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    (0..<500).filter { _ in engine.decide(RequestInfo(op: .syncwrite, pid: 1), FixedDetails()) != nil }.count
                }
            }
            var total = 0
            for await hits in group { total += hits }
            #expect(total == 1000)
        }
        #expect(engine.armedOps == [])
    }
}

extension Result where Failure == ParseError {
    var failureMessage: String? {
        if case .failure(let error) = self { return error.message }
        return nil
    }
}

@Suite struct RuleEngineNeedsTests {
    @Test func needsAreWhatTheArmedRulesForTheOpLookAt() {
        let engine = makeEngine("""
            fail read EIO comm=postgres
            fail write EIO path=db/*.wal offset=4K-
            delay 1ms fsync pid=7
            """)
        #expect(engine.needs(for: .read) == [.comm])
        #expect(engine.needs(for: .syncwrite) == [.path, .offset])
        #expect(engine.needs(for: .writeback) == [.path, .offset])
        #expect(engine.needs(for: .fsync) == [.processID])
        #expect(engine.needs(for: .unlink) == [])
        #expect(engine.armedRuleCount == 3)
    }

    @Test func dormantAndClearedRulesNeedNothing() {
        let engine = makeEngine("fail read EIO comm=x count=1\nfail read EIO id=p path=a/*")
        #expect(engine.needs(for: .read) == [.comm, .path])
        _ = engine.decide(RequestInfo(op: .read, pid: 5), FixedDetails(filePath: "b", processName: "x"))
        #expect(engine.needs(for: .read) == [.path], "the comm rule is dormant after its one hit")
        #expect(engine.armedRuleCount == 1)
        _ = engine.apply(text: "clear p")
        #expect(engine.needs(for: .read) == [])
        #expect(engine.armedRuleCount == 0)
    }
}
