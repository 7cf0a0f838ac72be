import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
import FaultRules
@testable import MonitorCore

/// Counts elements while XMLParser checks well-formedness.
final class ElementCounter: NSObject, XMLParserDelegate {
    var counts: [String: Int] = [:]
    var text = ""
    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                attributes: [String: String] = [:]) {
        counts[name, default: 0] += 1
    }
    func parser(_ parser: XMLParser, foundCharacters string: String) { text += string }
}

func parseXML(_ html: String) -> (ok: Bool, counter: ElementCounter, error: String) {
    let p = XMLParser(data: Data(html.utf8))
    let c = ElementCounter()
    p.delegate = c
    let ok = p.parse()
    return (ok, c, p.parserError.map { "\($0)" } ?? "")
}

/// A synthetic 10-minute run at 100 ms: Dirty ramps, Writeback plateaus at
/// the bdi limit during a stall, one spike, injections every 20 s.
func syntheticRun(samples n: Int = 6000, rule: String = "writeback path=/data/*.db errno=EIO") -> RunData {
    var run = RunData()
    let t0: Int64 = 5_000_000_000
    run.settings = [Setting(SettingKey.kernelRelease, "6.18.0"), Setting(SettingKey.mountDevice, "0:39"),
                    Setting(SettingKey.bdiMaxRatio, "1"), Setting(SettingKey.bdiStrictLimit, "1"),
                    Setting("rule.r1", rule)]
    run.workload = WorkloadInfo(command: "python3 writer.py --size 400M", startNs: t0, exitNs: t0 + Int64(n) * 100_000_000,
                                status: "exited 0", exitCode: 0)
    for i in 0..<n {
        var s = Sample(timeNs: t0 + Int64(i) * 100_000_000)
        s[Metric.dirty] = Double(i % 500) * 24_000 + (i == 3333 ? 900 * 1048576 : 0)
        s[Metric.writeback] = 37 * 1048576
        s[Metric.bdiReclaimable] = 11 * 1048576; s[Metric.bdiWriteback] = 37 * 1048576
        s[Metric.bdiDirtyThresh] = 48 * 1048576
        s[Metric.fuseWaiting] = Double(i % 13)
        s[Metric.immediateReclaim] = Double(i / 10)
        s[Metric.allocstallTotal] = 0
        run.samples.append(s)
    }
    for k in 0..<30 {
        let t = t0 + Int64(k) * 20_000_000_000 + 1_000
        run.injections.append(InjectionEvent(timeNs: t, ruleID: "r1", action: .fail, op: .writeback, path: "/data/x.db", inode: 0x10, errno: 5))
        run.traceEvents.append(TraceParser.parse("pll2-100 [000] ..... \(tsString(t + 500_000)): filemap_set_wb_err: dev=0:39 ino=0x10 errseq=0x5")!)
        run.traceEvents.append(TraceParser.parse("dd-300 [001] ..... \(tsString(t + 700_000)): balance_dirty_pages: bdi 0:39: limit=1 setpoint=1 dirty=1 bdi_setpoint=1 bdi_dirty=1 dirty_ratelimit=1 task_ratelimit=0 dirtied=1 dirtied_pause=1 paused=0 pause=\(k * 10) period=200 think=0 cgroup_ino=1")!)
        if k < 29 {   // the last one is never fsync'ed
            run.traceEvents.append(TraceParser.parse("python3-200 [000] ...1. \(tsString(t + 3_000_000)): file_check_and_advance_wb_err: file=f dev=0:39 ino=0x10 old=0x\(String(k * 0x2000 + 0x1005, radix: 16)) new=0x\(String((k + 1) * 0x2000 + 0x1005, radix: 16))")!)
        }
    }
    return run
}

/// ns → "S.UUUUUU" as tracefs prints it.
func tsString(_ ns: Int64) -> String {
    let us = ns / 1000
    let frac = String(us % 1_000_000)
    return "\(us / 1_000_000)." + String(repeating: "0", count: 6 - frac.count) + frac
}

@Suite struct DownsampleTests {
    @Test func keepsPeaksAndBoundsPointCount() {
        var pts = (0..<6000).map { ChartPoint(x: Double($0) * 0.1, y: sin(Double($0) / 50)) }
        pts[4321].y = 1000
        pts[1234].y = -1000
        let out = Downsample.minMax(pts, buckets: 800, xRange: 0...600)
        #expect(out.count <= 1600)
        #expect(out.contains { $0.y == 1000 && $0.x == pts[4321].x })
        #expect(out.contains { $0.y == -1000 })
        // Still in x order.
        #expect(zip(out, out.dropFirst()).allSatisfy { $0.x <= $1.x })
    }

    @Test func gapsStayGaps() {
        var pts = (0..<3000).map { ChartPoint(x: Double($0), y: 1) }
        for i in 1000..<1500 { pts[i].y = nil }
        let out = Downsample.minMax(pts, buckets: 100, xRange: 0...3000)
        #expect(out.filter { $0.y == nil }.count == 1)
        #expect(!out.contains { $0.y == 0 })
        // Small inputs are returned as is.
        #expect(Downsample.minMax(Array(pts.prefix(10)), buckets: 100, xRange: 0...10) == Array(pts.prefix(10)))
    }

    @Test func svgOfA10MinuteRunStaysSmall() {
        let run = syntheticRun()
        let charts = buildCharts(run)
        for c in charts {
            let svg = Chart.svg(c.spec)
            #expect(svg.utf8.count < 200_000, "\(c.spec.title): \(svg.utf8.count) bytes")
        }
    }
}

@Suite struct ReportTests {
    @Test func htmlIsWellFormedWithOneSvgPerChart() {
        let run = syntheticRun()
        let html = renderHTML(run: run)
        let (ok, c, err) = parseXML(html)
        #expect(ok, "\(err)")
        #expect(c.counts["svg"] == buildCharts(run).count)
        #expect(c.counts["svg"] == 5)
        #expect(c.counts["script"] == nil)
        #expect(!html.contains("http://") || !html.replacingOccurrences(of: "http://www.w3.org/2000/svg", with: "").contains("http://"))
        #expect(html.contains("never told"))
        #expect(html.contains("6.18.0"))
        #expect(html.utf8.count < 2_000_000)
    }

    @Test func escapesEverything() {
        let evil = "<&>\"' </td></table><script>alert(1)</script>"
        var run = syntheticRun(samples: 50, rule: evil)
        run.workload.command = "sh -c 'echo <&> \"x\"'"
        run.injections[0].path = evil
        run.injections[0].ruleID = "r<&>\""
        run.notes = [evil]
        run.settings.append(Setting(evil, evil))
        let html = renderHTML(run: run)
        let (ok, c, err) = parseXML(html)
        #expect(ok, "\(err)")
        #expect(c.counts["script"] == nil)
        #expect(!html.contains("<&>"))
        #expect(html.contains("&lt;&amp;&gt;&quot;"))
        // The text survives the round trip through escaping.
        #expect(c.text.contains(evil))
    }

    @Test func degradedRunStillRenders() {
        var run = RunData(samples: [Sample(timeNs: 0, values: [Metric.dirty: 1]), Sample(timeNs: 100_000_000)],
                          injections: [InjectionEvent(timeNs: 50, ruleID: "r1", action: .fail, op: .writeback, path: "/f", inode: 1, errno: 5)],
                          traceAvailable: false)
        run.notes.append("debugfs not mounted")
        let html = renderHTML(run: run)
        #expect(parseXML(html).ok)
        #expect(html.contains("tracefs not available"))
        #expect(html.contains("not available"))
        let summary = renderSummary(run: run)
        #expect(summary.contains("tracefs not available: the told/never-told table is empty"))
        #expect(summary.contains("peak Writeback: not recorded"))
        #expect(summary.contains("note: debugfs not mounted"))
        // An empty run does not crash either.
        #expect(parseXML(renderHTML(run: RunData())).ok)
        #expect(!renderSummary(run: RunData()).isEmpty)
    }

    @Test func summary() {
        let s = renderSummary(run: syntheticRun())
        #expect(s.contains("peak Dirty 907.6 MiB at 333.3 s"))
        #expect(s.contains("peak Writeback 37.0 MiB"))
        #expect(s.contains("injections: 30 (r1: 30)"))
        #expect(s.contains("told: thread python3[200] got EIO via fsync/fdatasync/msync 29 times, after 3.00–3.00 ms, told by FUSE\n"))
        #expect(s.contains("never told: 1 injection(s) on /data/x.db (ino 16) by any traced call"))
        #expect(s.contains("longest pause 290 ms"))
        #expect(s.contains("kernel 6.18.0, mount 0:39, bdi max_ratio=1 strict_limit=1"))
    }

    @Test func runDataLoadsItsOwnFiles() {
        let run = syntheticRun(samples: 100)
        let series = SampleSeries()
        let samplesText = run.samples.map(series.jsonLine).joined(separator: "\n") + "\n"
        var events: [RunEvent] = run.settings.map { .setting($0) }
        events.append(.workloadStart(timeNs: run.workload.startNs!, command: run.workload.command))
        events += run.injections.map { .injection($0) }
        events += run.traceEvents.map { .trace($0) }
        events.append(.workloadExit(timeNs: run.workload.exitNs!, status: "exited 0", code: 0))
        events.append(.note(timeNs: nil, text: "hello"))
        let eventsText = events.map(EventLog.jsonLine).joined(separator: "\n") + "\n{broken\n"
        let back = RunData.load(samplesJSONL: samplesText, eventsJSONL: eventsText)
        #expect(back.samples == run.samples)
        #expect(back.injections == run.injections)
        #expect(back.traceEvents == run.traceEvents)
        #expect(back.settings == run.settings)
        #expect(back.workload == run.workload)
        #expect(back.notes == ["hello", "1 line(s) of events.jsonl could not be read"])
        #expect(back.mountDevice == DeviceID(major: 0, minor: 39))
        #expect(back.rules == [Setting("r1", "writeback path=/data/*.db errno=EIO")])
        #expect(back.traceAvailable)
        let off = RunData.load(samplesJSONL: "", eventsJSONL: EventLog.jsonLine(.setting(Setting(SettingKey.traceAvailable, "0"))))
        #expect(!off.traceAvailable)
    }

    @Test func liveLine() {
        var s = Sample(timeNs: 0)
        s[Metric.dirty] = 12.3 * 1048576
        s[Metric.writeback] = 37 * 1048576
        s[Metric.bdiReclaimable] = 11.1 * 1048576
        s[Metric.bdiWriteback] = 37 * 1048576
        s[Metric.bdiDirtyThresh] = 48 * 1048576
        s[Metric.fuseWaiting] = 12
        #expect(LiveLine.format(s, faults: 3) == "Dirty 12.3 MiB  Writeback 37.0 MiB  bdi 48.1/48.0 MiB  waiting 12  faults 3")
        #expect(LiveLine.format(Sample(timeNs: 0, values: [Metric.dirty: 0]), faults: 0) == "Dirty 0.0 MiB  faults 0")
    }
}
