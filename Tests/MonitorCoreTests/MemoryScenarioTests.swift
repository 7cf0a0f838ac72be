// The memory scenario's pure parts: cgroup files (v1, v2), the reclaim
// throttle event, bdi limit changes, the one-line verdict and the summary.
import Testing
import FaultRules
@testable import MonitorCore

@Suite struct CgroupMemoryStateTests {
    @Test func v2FilesWithMaxAndEvents() {
        let s = CgroupMemoryState.parseV2(current: "134217728\n", max: "268435456\n",
                                          events: "low 0\nhigh 2\nmax 1234\noom 1\noom_kill 1\noom_group_kill 0\n")
        #expect(s.current == 134_217_728)
        #expect(s.max == 268_435_456)
        #expect(s.events == ["low": 0, "high": 2, "max": 1234, "oom": 1, "oom_kill": 1, "oom_group_kill": 0])
        var sample = Sample(timeNs: 1)
        sample.record(s)
        #expect(sample[Metric.cgCurrent] == 134_217_728)
        #expect(sample[Metric.cgMax] == 268_435_456)
        #expect(sample[Metric.cgEvent("max")] == 1234)
        #expect(sample[Metric.cgEvent("oom_kill")] == 1)
        #expect(sample[Metric.cgEvent("low")] == nil)   // not one of the charted events
    }

    @Test func unlimitedIsAbsentNotZero() {
        let v2 = CgroupMemoryState.parseV2(current: "4096", max: "max\n", events: nil)
        #expect(v2.max == nil)
        #expect(v2.events.isEmpty)
        // v1's "no limit" is PAGE_COUNTER_MAX pages in bytes.
        let v1 = CgroupMemoryState.parseV1(usage: "4096\n", limit: "9223372036854771712\n", failcnt: nil, oomControl: nil)
        #expect(v1.max == nil)
        #expect(v1.current == 4096)
    }

    @Test func v1FailcntIsMaxAndOomControlGivesOomKill() {
        let s = CgroupMemoryState.parseV1(usage: "100663296\n", limit: "134217728\n", failcnt: "5821\n",
                                          oomControl: "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
        #expect(s.current == 100_663_296)
        #expect(s.max == 134_217_728)
        #expect(s.events == ["max": 5821, "oom_kill": 0])
        #expect(s.events["high"] == nil)   // v1 has none: absent, not 0
    }

    @Test func memoryStatV1AndV2FieldsWeChart() {
        // Recorded as cg.dirty_bytes / cg.writeback_bytes / cg.file_bytes by CgroupMemoryStat.
        let v2 = CgroupMemoryStat.parse("anon 1\nfile 221249536\nfile_dirty 211812352\nfile_writeback 1048576\n")
        #expect(v2.dirty == 211_812_352 && v2.writeback == 1_048_576 && v2.file == 221_249_536)
        let v1 = CgroupMemoryStat.parse("cache 221249536\nrss 1\ndirty 211812352\nwriteback 1048576\ntotal_dirty 211812352\n")
        #expect(v1.version == .v1 && v1.dirty == 211_812_352 && v1.file == 221_249_536)
    }
}

@Suite struct ReclaimThrottleTests {
    @Test func parsesTheKernelsFormatWithItsTypo() throws {
        let e = try #require(TraceParser.parse("demo-writer-4242 [001] ..... 120.500000: mm_vmscan_throttled: nid=0 usec_timeout=100000 usect_delayed=96000 reason=VMSCAN_THROTTLE_WRITEBACK"))
        let t = try #require(ReclaimThrottle(e))
        #expect(t.task == "demo-writer" && t.pid == 4242)
        #expect(t.delayedUs == 96_000 && t.timeoutUs == 100_000)
        #expect(t.reason == "writeback")
        let fixed = try #require(TraceParser.parse("x-1 [000] ..... 1.000000: mm_vmscan_throttled: nid=0 usec_timeout=4000 usec_delayed=4000 reason=VMSCAN_THROTTLE_NOPROGRESS"))
        #expect(ReclaimThrottle(fixed)?.reason == "noprogress")
        #expect(ReclaimThrottle(fixed)?.delayedUs == 4000)
    }

    @Test func otherEventsAreNotThrottles() throws {
        let e = try #require(TraceParser.parse("x-1 [000] ..... 1.000000: balance_dirty_pages: bdi 0:39: pause=10"))
        #expect(ReclaimThrottle(e) == nil)
    }
}

/// A run: a writer (tid 500, in the cgroup) and another task (900) outside.
private func memoryRun(throttleMs: [Int64] = [], bdiPausesMs: [Int64] = [], oomKillAt: Int? = nil, status: String = "exited 0") -> RunData {
    var run = RunData()
    let t0: Int64 = 10_000_000_000
    run.settings = [Setting(SettingKey.kernelRelease, "6.18.0"), Setting(SettingKey.mountDevice, "0:55"),
                    Setting(SettingKey.bdiMaxRatio, "1"), Setting(SettingKey.bdiStrictLimit, "1"), Setting(SettingKey.bdiMaxBytes, "52428800"),
                    Setting("cgroup", "/sys/fs/cgroup/memory/faultfs-1 (v1), limit 134217728 bytes"),
                    Setting(SettingKey.cgroupTasks, "500 501")]
    run.workload = WorkloadInfo(command: "writer", startNs: t0, exitNs: t0 + 4_000_000_000, status: status, exitCode: 0)
    for i in 0..<40 {
        var s = Sample(timeNs: t0 + Int64(i) * 100_000_000)
        s[Metric.cgCurrent] = Double(min(i, 30)) * 4 * 1048576
        s[Metric.cgMax] = 128 * 1048576
        s[Metric.cgDirty] = Double(min(i, 30)) * 3 * 1048576
        s[Metric.cgWriteback] = 1048576
        s[Metric.cgFile] = Double(min(i, 30)) * 4 * 1048576
        s[Metric.cgEvent("max")] = Double(max(0, i - 30) * 100)
        s[Metric.cgEvent("oom_kill")] = Double(oomKillAt.map { i >= $0 ? 1 : 0 } ?? 0)
        // The runner lifts the limit after the first sample.
        s[Metric.bdiMaxRatio] = i == 0 ? 1 : 100
        s[Metric.bdiStrictLimit] = i == 0 ? 1 : 0
        s[Metric.bdiMaxBytes] = i == 0 ? 52_428_800 : 5_242_880_000
        s[Metric.bdiReclaimable] = 40 * 1048576; s[Metric.bdiWriteback] = 7 * 1048576
        run.samples.append(s)
    }
    for (k, ms) in throttleMs.enumerated() {
        let t = t0 + 3_000_000_000 + Int64(k) * 100_000_000
        run.traceEvents.append(TraceParser.parse("writer-500 [000] ..... \(tsString(t)): mm_vmscan_throttled: nid=0 usec_timeout=100000 usect_delayed=\(ms * 1000) reason=VMSCAN_THROTTLE_WRITEBACK")!)
        // Someone else on the machine: not the writer.
        run.traceEvents.append(TraceParser.parse("kswapd0-900 [001] ..... \(tsString(t + 1000)): mm_vmscan_throttled: nid=0 usec_timeout=100000 usect_delayed=100000 reason=VMSCAN_THROTTLE_ISOLATED")!)
    }
    for (k, ms) in bdiPausesMs.enumerated() {
        let t = t0 + 1_000_000_000 + Int64(k) * 100_000_000
        run.traceEvents.append(TraceParser.parse("writer-501 [001] ..... \(tsString(t)): balance_dirty_pages: bdi 0:55: limit=1 setpoint=1 dirty=1 bdi_setpoint=1 bdi_dirty=1 dirty_ratelimit=1 task_ratelimit=0 dirtied=1 dirtied_pause=1 paused=0 pause=\(ms) period=200 think=0 cgroup_ino=1")!)
    }
    return run
}

@Suite struct WriterVerdictTests {
    @Test func reclaimThrottleOfTheWritersTasksOnly() {
        let run = memoryRun(throttleMs: Array(repeating: 100, count: 25))
        guard case .throttledInReclaim(let secs, let reasons, let bdi) = run.writerVerdict else {
            Issue.record("\(run.writerVerdict.text)"); return
        }
        #expect(abs(secs - 2.5) < 1e-9)   // kswapd0's 2.5 s are not the writer's
        #expect(reasons.map(\.0) == ["writeback"])
        #expect(bdi == 0)
        #expect(run.writerVerdict.text == "writer: throttled in reclaim for 2.5 s (writeback 2.5 s); not OOM-killed")
    }

    @Test func bdiLimitWithItsInFlightPeak() {
        let run = memoryRun(bdiPausesMs: [200, 200, 200, -5, 100])
        #expect(run.writerVerdict.text == "writer: throttled by the bdi limit (47.0 MiB in flight) for 0.7 s in balance_dirty_pages")
    }

    @Test func theLargerThrottleWinsAndTheOtherIsMentioned() {
        let run = memoryRun(throttleMs: Array(repeating: 100, count: 30), bdiPausesMs: [200, 200])
        #expect(run.writerVerdict.text == "writer: throttled in reclaim for 3.0 s (writeback 3.0 s), and 0.4 s in balance_dirty_pages; not OOM-killed")
    }

    @Test func oomKillWhenTheWorkloadDiedOfSignal9() {
        let run = memoryRun(throttleMs: [100, 100], oomKillAt: 35, status: "killed by signal 9")
        #expect(run.writerVerdict == .oomKilled(kills: 1))
        #expect(run.writerVerdict.text == "writer: OOM-killed")
        // A kill in the cgroup of some other process, the workload exiting 0: not the writer.
        #expect(memoryRun(oomKillAt: 35).writerVerdict.text == "writer: not throttled")
    }

    @Test func shortSleepsAreNotThrottling() {
        #expect(memoryRun(throttleMs: [20, 30], bdiPausesMs: [10]).writerVerdict.text == "writer: not throttled")
    }

    @Test func summaryNamesTheCgroupAndTheBdiChange() {
        let run = memoryRun(throttleMs: Array(repeating: 100, count: 25))
        let lines = run.memorySummaryLines
        #expect(lines.first == "writer: throttled in reclaim for 2.5 s (writeback 2.5 s); not OOM-killed")
        #expect(lines.contains("cgroup memory: peak 120.0 MiB of its 128.0 MiB limit, peak file_dirty 90.0 MiB, file_writeback 1.0 MiB (together 91.0 MiB), file 120.0 MiB"), "\(lines)")
        #expect(lines.contains("cgroup memory at the end: 120.0 MiB, file_dirty 90.0 MiB, file_writeback 1.0 MiB"), "\(lines)")
        #expect(lines.contains("cgroup memory events: max 900, oom_kill 0"), "\(lines)")
        #expect(lines.contains("reclaim_throttle (vmscan:mm_vmscan_throttled): 50 sleeps on the machine, 5.0 s; the workload's: 25, 2.5 s"), "\(lines)")
        let summary = renderSummary(run: run)
        #expect(summary.contains("bdi max_ratio=1 strict_limit=1 max_bytes=52428800; changed: max_ratio 1→100 at 0.1 s, strict_limit 1→0 at 0.1 s"), "\(summary)")
        #expect(summary.contains("\nwriter: throttled in reclaim for 2.5 s"), "\(summary)")
    }

    @Test func bdiChangesSeenInSamples() {
        var run = memoryRun()
        #expect(run.bdiLimitChanges.map(\.knob) == ["max_ratio", "strict_limit"])   // max_bytes follows max_ratio: not a change of its own
        // Put back near the end: a second change.
        run.samples[39][Metric.bdiMaxRatio] = 1
        let ratio = run.bdiLimitChanges.filter { $0.knob == "max_ratio" }
        #expect(ratio.map(\.to) == [100, 1])
        #expect(ratio.map(\.from) == [1, 100])
    }

    @Test func aRunWithoutCgroupOrThrottleHasNoMemoryLines() {
        var run = RunData()
        run.samples = [Sample(timeNs: 1, values: [Metric.dirty: 1])]
        #expect(run.memorySummaryLines.isEmpty)
        #expect(buildCharts(run).allSatisfy { !$0.spec.title.contains("cgroup") })
    }

    @Test func chartsDrawTheCgroupAndTheThrottles() {
        let run = memoryRun(throttleMs: [100, 100])
        let titles = buildCharts(run).map(\.spec.title)
        #expect(titles.contains("The workload's memory cgroup"))
        #expect(titles.contains("Reclaim throttling (vmscan:mm_vmscan_throttled), by reason"))
        let cg = buildCharts(run).first { $0.spec.title == "The workload's memory cgroup" }!
        #expect(cg.spec.series.map(\.name) == ["usage_in_bytes", "limit_in_bytes", "file", "file_dirty", "file_writeback"])
        // The rises of "max" are markers.
        #expect(cg.spec.markers.contains { $0.label == "cgroup max" })
        let reclaim = buildCharts(run).first { $0.spec.title.hasPrefix("Reclaim throttling") }!
        #expect(reclaim.spec.series.map(\.name) == ["writeback (workload)", "other tasks"])
        #expect(reclaim.spec.series.map(\.points.count) == [2, 2])
        let html = renderHTML(run: run)
        #expect(parseXML(html).ok)
    }

    @Test func fineRatioIsShownInPercent() {
        var run = memoryRun()
        for i in run.samples.indices { run.samples[i][Metric.bdiMaxRatioFine] = i < 5 ? 10000 : 446_213 }
        let changes = run.bdiLimitChanges.filter { $0.knob == "max_ratio" }
        #expect(changes.count == 1)
        #expect(renderSummary(run: run).contains("max_ratio 1→44.62 at 0.5 s"), "\(renderSummary(run: run))")
    }

    @Test func bdiLimitsOptionText() {
        let l = BdiLimits(maxRatio: 100, maxBytes: nil, strictLimit: false)
        #expect(l.description == "max_ratio=100 strict_limit=0")
        #expect(l.writes.map(\.file) == ["max_ratio", "strict_limit"])
        #expect(BdiLimits.parseSwitch("on") == true && BdiLimits.parseSwitch("OFF") == false && BdiLimits.parseSwitch("maybe") == nil)
        #expect(BdiLimits().isEmpty)
    }
}
