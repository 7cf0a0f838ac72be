import Foundation
import Testing
import FaultRules
@testable import MonitorCore

// What a person reads in report.html and summary.txt: marker labels laid
// out so that each can be read, what was armed and when, grouped rows,
// charts without data, the workload's output, `faultfs monitor` wording.

/// The rules of `MarkerLayout`, checked on its output.
func layoutProblems(_ items: [MarkerLayout.Item], _ placed: [MarkerLayout.Placement], frame: ClosedRange<Double>) -> [String] {
    var problems: [String] = []
    for (i, p) in placed.enumerated() {
        if p.left < frame.lowerBound - 1e-9 || p.right > frame.upperBound + 1e-9 { problems.append("\(i) outside the frame: \(p)") }
        if p.left <= items[i].x && items[i].x <= p.right { problems.append("\(i): its own line crosses it") }
        for (j, q) in placed.enumerated() where j != i {
            if p.row == q.row && p.left < q.right && q.left < p.right { problems.append("\(i) and \(j) overlap in row \(p.row)") }
            // j's line climbs through the rows below j's: it must miss i's box.
            if q.row > p.row && p.left <= items[j].x && items[j].x <= p.right { problems.append("line of \(j) crosses label \(i)") }
        }
    }
    return problems
}

/// A small seeded generator for repeatable random cases.
struct XorShift {
    var state: UInt64
    mutating func next() -> UInt64 {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return state
    }
}

@Suite struct MarkerLayoutTests {
    let frame = 64.0...884.0

    @Test func theDemosMarkersAreAllReadable() {
        // The demo: steps at 0.1 s, 2.1 s (two at once), 12 s (two at once), faults clustered nearby.
        let texts = ["fail writeback ENOSPC path=demo.dat", "r1 ENOSPC ×8", "clear", "stall writeback path=stall.dat",
                     "r2 stall ×12", "clear", "release", "r2 release ×12"]
        let xs = [66.5, 85.0, 112.0, 112.3, 170.0, 328.0, 328.0, 328.4]
        let items = zip(xs, texts).map { MarkerLayout.Item(x: $0, width: Chart.textWidth($1)) }
        let placed = MarkerLayout.place(items, frame: frame)
        #expect(layoutProblems(items, placed, frame: frame) == [])
        // Nothing needed shortening, and the band stays small.
        #expect(zip(items, placed).allSatisfy { $0.width == $1.width })
        #expect(placed.map(\.row).max()! <= 4)
    }

    @Test func labelsNearTheRightEdgeGoLeftOfTheirLine() {
        let items = [MarkerLayout.Item(x: 880, width: 150), MarkerLayout.Item(x: 880, width: 60)]
        let placed = MarkerLayout.place(items, frame: frame)
        #expect(placed.allSatisfy { !$0.rightOfLine })
        #expect(layoutProblems(items, placed, frame: frame) == [])
    }

    @Test func aLabelWiderThanHalfTheFrameIsShortened() {
        let items = [MarkerLayout.Item(x: 400, width: 2000)]
        let placed = MarkerLayout.place(items, frame: frame)
        #expect(placed[0].width < 410)
        #expect(layoutProblems(items, placed, frame: frame) == [])
        #expect(Chart.textWidth(Chart.fit(String(repeating: "abc ", count: 100), width: placed[0].width)) <= placed[0].width + 0.5)
    }

    @Test func aLeftAndARightLabelCoveringEachOthersLineAreSeparated() {
        // Right-hand label at 400 spans to ~700; the left-hand one at 600 (it
        // would not fit right) spans back past 400: a cycle to break.
        let items = [MarkerLayout.Item(x: 400, width: 300), MarkerLayout.Item(x: 600, width: 300)]
        let placed = MarkerLayout.place(items, frame: 64.0...780.0)
        #expect(layoutProblems(items, placed, frame: 64.0...780.0) == [])
    }

    @Test func randomMarkersAlwaysKeepTheRules() {
        var rng = XorShift(state: 42)
        for round in 0..<2000 {
            let n = Int(rng.next() % 14) + 1
            let items = (0..<n).map { _ -> MarkerLayout.Item in
                // Clumps: many markers share an x or sit a pixel apart.
                let x = rng.next() % 3 == 0 ? 64 + Double(rng.next() % 5) : 64 + Double(rng.next() % 821)
                return MarkerLayout.Item(x: x, width: 10 + Double(rng.next() % 420))
            }
            let placed = MarkerLayout.place(items, frame: frame)
            let problems = layoutProblems(items, placed, frame: frame)
            #expect(problems.isEmpty, "round \(round): \(items) -> \(placed): \(problems)")
            if !problems.isEmpty { break }
        }
    }

    @Test func everyPlanStepIsLabelledInTheSVG() {
        var markers = (0..<40).map { ChartMarker(x: 1.0 + Double($0) * 0.001, label: "r1 EIO") }
        markers += ["fail writeback EIO", "clear", "stall writeback", "clear", "release"].enumerated().map {
            ChartMarker(x: $0.offset < 3 ? 1.0 : 12.0, label: $0.element, kind: .planStep)
        }
        let spec = ChartSpec(title: "t", yUnit: "MiB", series: [ChartSeries(name: "a", color: "#000", points: [ChartPoint(x: 0, y: 1)])],
                             markers: markers, xRange: 0...20)
        let svg = Chart.svg(spec)
        #expect(parseXML(svg).ok)
        for step in ["fail writeback EIO", "stall writeback", "release"] {
            #expect(svg.contains("class=\"mlab step\"") && svg.contains("data-full=\"\(step)\""), "\(step)")
        }
        #expect(svg.components(separatedBy: "data-full=\"clear\"").count - 1 == 2)
        // 40 faults in a few ms: one label.
        #expect(svg.contains(">r1 EIO ×40<"))
        #expect(svg.contains("textLength="))
    }
}

@Suite struct ArmedRulesTests {
    func step(_ s: Double, _ line: String, _ result: String = "ok") -> ControlStep {
        ControlStep(timeNs: Int64(s * 1e9), line: line, result: result)
    }

    @Test func theDemosPlanArmsTwoRules() {
        let controls = [step(0.1, "fail writeback ENOSPC path=demo.dat"), step(2.1, "clear"), step(2.1, "stall writeback path=stall.dat"),
                        step(12, "clear"), step(12, "release")]
        let injections = (0..<8).map { InjectionEvent(timeNs: 1_000_000_000 + Int64($0), ruleID: "r1", action: .fail, op: .writeback, errno: ENOSPC) }
            + (0..<3).map { InjectionEvent(timeNs: 3_000_000_000 + Int64($0), ruleID: "r2", action: .stall, op: .writeback) }
            + [InjectionEvent(timeNs: 12_000_000_001, ruleID: "r2", action: .release, op: .writeback)]
        let armed = ArmedRules.timeline(controls: controls, injections: injections)
        #expect(armed.map(\.id) == ["r1", "r2"])
        #expect(armed[0] == ArmedRule(id: "r1", text: "fail writeback ENOSPC path=demo.dat", armedNs: 100_000_000,
                                      endedNs: 2_100_000_000, endedBy: "clear", fired: 8))
        #expect(armed[1].text == "stall writeback path=stall.dat")
        #expect(armed[1].endedNs == 12_000_000_000 && armed[1].endedBy == "clear")
        #expect(armed[1].fired == 3)
    }

    @Test func idsClearReleaseCapacityAndRefusedLines() {
        let controls = [step(0, "fail fsync EIO id=r2"), step(1, "fail read EIO"), step(2, "stall writeback"),
                        step(3, "fail write EBOGUS", "Invalid argument"), step(4, "capacity 16K"), step(5, "release"),
                        step(6, "clear r1"), step(7, "clear"), step(8, "capacity off")]
        let armed = ArmedRules.timeline(controls: controls)
        // The automatic ids skip r2, taken by id=.
        #expect(armed.map(\.id) == ["r2", "r1", "r3", "capacity"])
        #expect(armed[0].endedBy == "clear" && armed[0].endedNs == 7_000_000_000)
        #expect(armed[1].endedBy == "clear r1")
        #expect(armed[2].endedBy == "release" && armed[2].endedNs == 5_000_000_000)
        // `clear` keeps the capacity; `capacity off` ends it.
        #expect(armed[3].text == "capacity 16K" && armed[3].endedBy == "capacity off")
        #expect(!armed.contains { $0.text.contains("EBOGUS") })
    }

    @Test func rulesListedByTheControlFile() {
        let text = "fail writeback EIO id=r1 path=*.db  # matched=3 hits=1\nstall write id=slow  # matched=0 hits=0 dormant\n# warning: something\n"
        #expect(ArmedRules.listed(inControlFile: text) == [Setting("r1", "fail writeback EIO path=*.db"), Setting("slow", "stall write")])
    }

    @Test func theHeaderAndSummaryShowWhatWasArmed() {
        var run = syntheticRun(samples: 100)
        run.settings.removeAll { $0.key.hasPrefix("rule.") }
        run.controls = [ControlStep(timeNs: run.startNs, line: "fail writeback EIO path=*.db", result: "ok")]
        let html = renderHTML(run: run)
        #expect(html.contains("<th>armed</th><td><code>r1</code> <code>fail writeback EIO path=*.db</code>: armed at 0.00 s, until the end; fired 30 times"))
        #expect(renderSummary(run: run).contains("armed: r1 'fail writeback EIO path=*.db' at 0.00 s, until the end; fired 30 times\n"))
    }
}

@Suite struct ReportRowsTests {
    @Test func identicalInjectionsShareARow() {
        let run = syntheticRun(samples: 100)
        let paths = Derivation.errorPaths(injections: run.injections, traceEvents: run.traceEvents, mountDevice: run.mountDevice)
        let groups = Derivation.group(paths)
        // 29 told the same way, one never told.
        #expect(groups.map(\.count) == [29, 1])
        #expect(groups[1].first.status == .neverTold)
        #expect(groups[0].firstNs < groups[0].lastNs)
        let html = renderHTML(run: run)
        #expect(html.components(separatedBy: "<tr><td>").count - 1 == 2)
        #expect(html.contains("<td>×29</td>"))
        // The kernel's events and the threads are named as such.
        #expect(html.contains("kernel event <code>filemap:filemap_set_wb_err</code>, +0.50 ms, in thread pll2[100]"))
        // Without syscall events in the trace the call is one of the fsync family, which one unknown.
        #expect(html.contains("<span class=\"told\">thread python3[200]</span>, <code>fsync/fdatasync/msync</code> (told by FUSE; kernel event <code>filemap:file_check_and_advance_wb_err</code> in the call), +3.00 ms, got EIO"))
        #expect(!html.contains(" by pll2"))
    }

    @Test func differentErrnosOrFilesAreDifferentRows() {
        let i1 = InjectionEvent(timeNs: 1, ruleID: "r1", action: .fail, op: .writeback, path: "a", inode: 1, errno: EIO)
        var i2 = i1; i2.timeNs = 2
        var i3 = i1; i3.timeNs = 3; i3.errno = ENOSPC
        var i4 = i1; i4.timeNs = 4; i4.path = "b"; i4.inode = 2
        let paths = Derivation.errorPaths(injections: [i4, i3, i2, i1], traceEvents: [], mountDevice: nil)
        #expect(Derivation.group(paths).map(\.count) == [2, 1, 1])
    }
}

@Suite struct ReportTextTests {
    @Test func aChartWithoutDataIsOneLine() {
        var run = syntheticRun(samples: 100)
        run.traceEvents.removeAll { $0.balanceDirtyPagesPauseMs != nil }
        let html = renderHTML(run: run)
        #expect(parseXML(html).ok)
        #expect(html.contains("<p class=\"nodata\"><b>Throttling: balance_dirty_pages pauses</b>: No balance_dirty_pages events"))
        #expect(!html.contains("<h3>Throttling"))
        #expect(html.components(separatedBy: "<svg").count - 1 == 4)
    }

    @Test func theWorkloadsOutputIsShownBriefly() {
        let text = (1...57).map { "line \($0)" }.joined(separator: "\n") + "\n"
        let out = WorkloadOutput.tail(of: text, stream: "stdout", file: "workload.out")
        #expect(out.totalLines == 57 && out.lastLines.count == 20 && out.lastLines.first == "line 38" && out.lastLines.last == "line 57")
        let odd = WorkloadOutput.tail(of: "a\u{1B}[31mred\r\nno newline", stream: "stderr", file: "workload.err")
        #expect(odd.lastLines == ["a\u{FFFD}[31mred", "no newline"])
        #expect(WorkloadOutput.tail(of: "", stream: "stderr", file: "workload.err").totalLines == 0)

        var run = syntheticRun(samples: 100)
        run.workloadOutput = [out, WorkloadOutput.tail(of: "", stream: "stderr", file: "workload.err")]
        let html = renderHTML(run: run)
        #expect(parseXML(html).ok)
        #expect(html.contains("stdout (last 20 of 57 lines; all of it in workload.out):"))
        #expect(html.contains("line 38\nline 39"))
        #expect(html.contains("stderr: nothing (workload.err is empty)"))
        let summary = renderSummary(run: run)
        #expect(summary.contains("workload stdout (last 20 of 57 lines; all of it in workload.out):\n  | line 38\n"))
        #expect(summary.contains("  | line 57\n"))
        #expect(!summary.contains("stderr"))
    }

    @Test func aMonitorRecordingIsNotCalledARun() {
        var run = syntheticRun(samples: 100)
        run.settings += [Setting(SettingKey.runKind, "monitor"), Setting(SettingKey.mountPoint, "/srv/db")]
        run.workload.command = "faultfs monitor /srv/db"
        run.workload.status = "stopped by Ctrl-C (SIGINT)"
        let summary = renderSummary(run: run)
        #expect(summary.hasPrefix("faultfs monitor: /srv/db\n"))
        #expect(summary.contains("recording stopped by Ctrl-C (SIGINT)"))
        #expect(!summary.contains("faultfs run") && !summary.contains("workload stopped"))
        let html = renderHTML(run: run)
        #expect(html.contains("<h1>faultfs monitor</h1>") && !html.contains("faultfs run"))
        // Rules seen in the control file when recording started.
        #expect(html.contains("<code>r1</code> <code>writeback path=/data/*.db errno=EIO</code>: armed before recording started"))
    }
}

@Suite struct MarkerLayoutEdgeTests {
    @Test func aTinyFrameDoesNotCrash() {
        let items = [MarkerLayout.Item(x: 10, width: 100), MarkerLayout.Item(x: 20, width: 100)]
        let placed = MarkerLayout.place(items, frame: 0...30)
        #expect(placed.count == 2)
        #expect(MarkerLayout.place([], frame: 0...30).isEmpty)
    }
}
