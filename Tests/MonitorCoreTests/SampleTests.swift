import Testing
import FaultRules
@testable import MonitorCore

@Suite struct SampleTests {
    /// A kernel without debugfs, fusectl, nr_throttled_written or WritebackTmp.
    func sparseSample() -> Sample {
        var s = Sample(timeNs: 1_000)
        s.record(MemInfo.parse("Dirty: 8 kB\nWriteback: 0 kB\nMemAvailable: 100 kB\n"))
        s.record(VMStat.parse("nr_dirty 2\nnr_written 7\n"))
        return s
    }

    @Test func absentCountersAreNotZero() {
        let s = sparseSample()
        #expect(s[Metric.dirty] == 8192)
        #expect(s[Metric.writeback] == 0)
        #expect(s[Metric.writebackTmp] == nil)
        #expect(s[Metric.throttledWritten] == nil)
        #expect(s[Metric.pgscanTotal] == nil)
        #expect(s[Metric.bdiDirtyThresh] == nil)
        #expect(s[Metric.fuseWaiting] == nil)
    }

    @Test func csvEmptyCellsForAbsent() {
        let series = SampleSeries(columns: [Metric.dirty, Metric.writeback, Metric.throttledWritten, Metric.nrWritten])
        #expect(series.csvHeader() == "time_ns,mem.dirty_bytes,mem.writeback_bytes,vm.nr_throttled_written,vm.nr_written")
        #expect(series.csvRow(sparseSample()) == "1000,8192,0,,7")
    }

    @Test func jsonLeavesAbsentOutAndRoundTrips() throws {
        var s = sparseSample()
        s[Metric.psi("io", "some", "avg10")] = 1.25
        let line = SampleSeries().jsonLine(s)
        #expect(line.hasPrefix("{\"time_ns\":1000,"))
        #expect(!line.contains("null"))
        #expect(!line.contains(Metric.throttledWritten))
        #expect(line.contains("\"mem.writeback_bytes\":0"))
        let back = try #require(SampleSeries.parseJSONLine(line))
        #expect(back == s)
        // A writer that used nulls is read the same way.
        let withNull = try #require(SampleSeries.parseJSONLine("{\"time_ns\":5,\"mem.dirty_bytes\":null,\"mem.writeback_bytes\":3}"))
        #expect(withNull[Metric.dirty] == nil && withNull[Metric.writeback] == 3)
        #expect(SampleSeries.parseJSONLine("not json") == nil)
    }

    @Test func standardColumnsCoverRecordedKeys() throws {
        var s = Sample(timeNs: 0)
        s.record(MemInfo.parse(try fixture("meminfo.dirty")))
        s.record(VMStat.parse(try fixture("vmstat.after")))
        s.record(BdiStats.parse("BdiWriteback: 1 kB\nBdiReclaimable: 1 kB\nBdiDirtyThresh: 1 kB\nDirtyThresh: 1 kB\nBackgroundThresh: 1 kB\nBdiWriteBandwidth: 1 kBps\n"))
        s.record(FuseConnectionState(waiting: 1, maxBackground: 12, congestionThreshold: 9))
        s.record(Pressure.parse("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"), resource: "io")
        s.record(CgroupMemoryStat.parse("anon 1\nfile 2\nfile_dirty 3\nfile_writeback 4\n"))
        s.record(ProcStat(pid: 1, comm: "x", state: "D", utimeTicks: 1, stimeTicks: 2, rssPages: 3))
        let missing = Set(s.values.keys).subtracting(Metric.standardColumns)
        #expect(missing.isEmpty, "not in standardColumns: \(missing.sorted())")
        #expect(s[Metric.procBlocked] == 1)
        #expect(s[Metric.nrWritten] == 13182325)
    }

    @Test func numberFormatting() {
        #expect(formatNumber(3) == "3")
        #expect(formatNumber(0.5) == "0.5")
        #expect(formatFixed(12.345, 1) == "12.3")
        #expect(formatFixed(-0.04, 1) == "0.0")
        #expect(formatFixed(-1.25, 2) == "-1.25")
        #expect(formatFixed(0.05, 2) == "0.05")
        #expect(formatMiB(37.0 * 1048576) == "37.0 MiB")
    }
}

@Suite struct EventLogTests {
    @Test func roundTripEveryKind() throws {
        let trace = try #require(TraceParser.parse("python3-20466 [000] ...1. 3368.529223: file_check_and_advance_wb_err: file=00000000ba5d258d dev=0:39 ino=0xf780a2 old=0x0 new=0x1005"))
        var shifted = trace
        shifted.timeNs = 42
        let events: [RunEvent] = [
            .setting(Setting("rule.r1", "writeback \"x\" <&> EIO")),
            .workloadStart(timeNs: 1, command: "python3 -c 'print(1)'\n"),
            .injection(InjectionEvent(timeNs: 2, ruleID: "r1", action: .fail, op: .writeback, path: "/a b", inode: 0xf780a2, errno: 5)),
            .trace(shifted),
            .note(timeNs: nil, text: "tracefs: \u{1} odd"),
            .note(timeNs: 7, text: "x"),
            .workloadExit(timeNs: 9, status: "exited 1", code: 1),
            .workloadExit(timeNs: 9, status: "killed by signal 9", code: nil),
        ]
        for e in events {
            let line = EventLog.jsonLine(e)
            #expect(!line.contains("\n"))
            #expect(EventLog.parseLine(line) == e, "\(line)")
        }
        #expect(EventLog.parseLine("{\"kind\":\"martian\"}") == nil)
    }
}
