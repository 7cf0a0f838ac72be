import Testing
@testable import MonitorCore

@Suite struct TraceParserTests {
    @Test func fixtureTrace() throws {
        let events = TraceParser.parseAll(try fixture("trace.txt"))
        #expect(events.count == 19)
        // The fixture holds 8 filemap_set_wb_err lines (one per failed
        // FUSE_WRITE reply), all on 0:39 ino 0xf780a2.
        let sets = events.compactMap { e -> SetWbErr? in if case .setWbErr(let s) = e.payload { return s }; return nil }
        #expect(sets.count == 8)
        #expect(sets.allSatisfy { $0.dev == DeviceID(major: 0, minor: 39) && $0.ino == 0xf780a2 })
        // The printed errseq is the previous value: 0 for the first, then EIO.
        #expect(sets[0].errno == 0)
        #expect(sets[1].errno == -5)

        let checks = events.filter { if case .checkAndAdvance = $0.payload { return true }; return false }
        #expect(checks.count == 1)
        let c = try #require(checks.first)
        #expect(c.task == "python3" && c.pid == 20466 && c.cpu == 0)
        guard case .checkAndAdvance(let ca) = c.payload else { Issue.record("payload"); return }
        #expect(ca.reportedErrno == 5)
        #expect(ca.seen)
        #expect(ca.reported)
        #expect(ca.old == 0 && ca.new == 0x1005)
        #expect(ca.file == "00000000ba5d258d")
        #expect(c.traceTimeNs == 3368_529_223_000)
        #expect(c.timeNs == c.traceTimeNs)
        #expect(abs(c.seconds - 3368.529223) < 1e-9)

        let ends = events.compactMap { e -> FuseRequestEnd? in if case .fuseRequestEnd(let f) = e.payload { return f }; return nil }
        #expect(ends.count == 10)
        #expect(ends.allSatisfy { $0.connection == 39 })
        #expect(ends[0].error == -2 && ends[0].req == 4 && ends[0].len == 16)
        #expect(ends.filter { $0.error == -5 }.count == 8)
        #expect(events[0].task == "pll2" && events[0].pid == 20461 && events[0].cpu == 1)
    }

    @Test func balanceDirtyPagesGenericFields() throws {
        let line = "              dd-3000    [001] d..1.  100.000500: balance_dirty_pages: bdi 0:39: limit=12288 setpoint=10752 dirty=12400 bdi_setpoint=10752 bdi_dirty=12400 dirty_ratelimit=32 task_ratelimit=0 dirtied=33 dirtied_pause=32 paused=0 pause=200 period=200 think=0 cgroup_ino=1"
        let e = try #require(TraceParser.parse(line))
        #expect(e.name == "balance_dirty_pages")
        #expect(e.balanceDirtyPagesPauseMs == 200)
        guard case .balanceDirtyPages(let kv) = e.payload else { Issue.record("payload"); return }
        #expect(kv["bdi"] == "0:39")
        #expect(kv.int("limit") == 12288)
        #expect(kv.int("period") == 200)
        #expect(kv.int("think") == 0)
        #expect(e.traceTimeNs == 100_000_500_000)
    }

    @Test func taskNamesWithSpacesAndDashesAndNoFlagsColumn() throws {
        let e = try #require(TraceParser.parse("  Web Content-x-77 [003] 5.5: mm_vmscan_throttled: nid=0 usec_timeout=100000 usect_delayed=4000 reason=VMSCAN_THROTTLE_WRITEBACK"))
        #expect(e.task == "Web Content-x")
        #expect(e.pid == 77 && e.cpu == 3)
        #expect(e.traceTimeNs == 5_500_000_000)
        guard case .vmscanThrottled(let kv) = e.payload else { Issue.record("payload"); return }
        #expect(kv["reason"] == "VMSCAN_THROTTLE_WRITEBACK")
        #expect(kv.int("usect_delayed") == 4000)
    }

    @Test func unknownEventsKeepTheirFields() throws {
        let e = try #require(TraceParser.parse("kworker/u8:1-55 [000] ..... 9.000001: writeback_start: bdi 0:39: sb_dev 0:39 nr_pages=1024 sync_mode=0 kupdate=0 range_cyclic=1 background=1 reason=vmscan cgroup_ino=1"))
        #expect(e.task == "kworker/u8:1")
        #expect(e.payload == .other)
        #expect(e.fields["reason"] == "vmscan")
        #expect(e.fields["bdi"] == "0:39")
        #expect(e.fields.int("nr_pages") == 1024)
    }

    @Test func nonEventLines() {
        #expect(TraceParser.parse("# tracer: nop") == nil)
        #expect(TraceParser.parse("") == nil)
        #expect(TraceParser.parse("CPU:1 [LOST 123 EVENTS]") == nil)
        #expect(TraceParser.lostEvents("CPU:1 [LOST 123 EVENTS]") == 123)
        #expect(TraceParser.lostEvents("python3-1 [000] ..... 1.0: x: y") == nil)
    }
}
