import FaultRules
import Testing
@testable import MonitorCore

@Suite struct PlanTests {
    @Test func argumentsPairEachTriggerWithTheLatestFault() throws {
        let args = ["--out", "runs/2", "--fault", "stall writeback", "--at", "1s", "--dir", "/tmp/t",
                    "--fault=release", "--at=6s", "--fault", "fail fsync EIO", "--after-bytes", "64M",
                    "--fault", "clear", "--when", "checkpoint \\d+ done", "--fault", "capacity 1G",
                    "--", "fio", "--at", "9s"]
        let steps = try Plan.fromArguments(args, valued: ["--out", "--dir"])
        #expect(steps == [
            PlanStep(.at(1_000_000_000), "stall writeback"),
            PlanStep(.at(6_000_000_000), "release"),
            PlanStep(.afterBytes(64 << 20), "fail fsync EIO"),
            PlanStep(.outputMatches("checkpoint \\d+ done"), "clear"),
            PlanStep(.at(0), "capacity 1G"),
        ])
    }

    @Test func oneFaultTwoTriggersMeansTwoSteps() throws {
        let steps = try Plan.fromArguments(["--fault", "release", "--at", "2s", "--at", "4s"])
        #expect(steps == [PlanStep(.at(2_000_000_000), "release"), PlanStep(.at(4_000_000_000), "release")])
    }

    @Test func badArguments() {
        #expect(throws: PlanError.self) { try Plan.fromArguments(["--at", "2s"]) }
        #expect(throws: PlanError.self) { try Plan.fromArguments(["--fault", "x", "--at", "soon"]) }
        #expect(throws: PlanError.self) { try Plan.fromArguments(["--fault", "x", "--after-bytes", "lots"]) }
        #expect(throws: PlanError.self) { try Plan.fromArguments(["--fault", "x", "--when", "(unclosed"]) }
        #expect(throws: PlanError.self) { try Plan.fromArguments(["--fault"]) }
    }

    @Test func planFile() throws {
        let text = """
            # the demo, more or less
            when /phase 1/: fail writeback ENOSPC path=demo.dat
            at 2.5s: stall writeback   # comment kept for the fault layer
            after-bytes 1G: release

              clear
            """
        let steps = try Plan.parse(text)
        #expect(steps == [
            PlanStep(.outputMatches("phase 1"), "fail writeback ENOSPC path=demo.dat"),
            PlanStep(.at(2_500_000_000), "stall writeback   # comment kept for the fault layer"),
            PlanStep(.afterBytes(1 << 30), "release"),
            PlanStep(.at(0), "clear"),
        ])
        #expect(throws: PlanError.self) { try Plan.parse("at 2s release") }
        #expect(throws: PlanError.self) { try Plan.parse("at 2s:") }
        let e = #expect(throws: PlanError.self) { try Plan.parse("clear\nwhen /x: release") }
        #expect(e?.description.hasPrefix("plan line 2:") == true)
    }

    @Test func planLinesAreCheckedWithTheControlParser() {
        let fault = #expect(throws: PlanError.self) {
            try Plan.fromArguments(["--fault", "fail writeback EBOGUS", "--at", "1s", "--", "true"])
        }
        #expect(fault?.description == "--fault 'fail writeback EBOGUS': line 1, column 16: unknown errno \"EBOGUS\"; expected an errno name such as ENOSPC or EIO, or a number in 1...511")
        let file = #expect(throws: PlanError.self) { try Plan.parse("# plan\nat 1s: fail flush EIO\nat 2s: stall wrtie\n") }
        #expect(file?.description.hasPrefix("plan line 3: 'stall wrtie': line 1, column 7: unknown operation \"wrtie\"") == true, "\(String(describing: file))")
        // A command the parser accepts, but the daemon may refuse at its time, passes.
        #expect((try? Plan.parse("at 1s: clear NOSUCHID"))?.count == 1)
    }

    /// Triggers use FaultRules' one grammar: what the control language
    /// accepts, nothing more (UnitsTests has every form).
    @Test func triggersUseTheControlLanguagesUnits() throws {
        func trigger(_ option: String, _ value: String) -> PlanTrigger? {
            (try? Plan.fromArguments(["--fault", "release", option, value]))?.first?.trigger
        }
        #expect(trigger("--at", "100ms") == .at(100_000_000))
        #expect(trigger("--at", "1.5s") == .at(1_500_000_000))
        #expect(trigger("--at", "0.5m") == .at(30_000_000_000))
        #expect(trigger("--at", "2") == nil, "a duration needs its unit, as in the control language")
        #expect(trigger("--at", "-1s") == nil)
        #expect(trigger("--at", " 2s") == nil && trigger("--at", "2s ") == nil, "no white space, as in the control language")
        #expect(trigger("--after-bytes", "1.5G") == .afterBytes(3 << 29))
        #expect(trigger("--after-bytes", "64MiB") == .afterBytes(64 << 20))
        #expect(trigger("--after-bytes", "4096") == .afterBytes(4096))
        #expect(trigger("--after-bytes", "x") == nil)
        // In a plan file, the spaces around the value belong to the line's syntax.
        #expect(try Plan.parse("at  2s : release") == [PlanStep(.at(2_000_000_000), "release")])
        #expect(formatSeconds(2_000_000_000) == "2s")
        #expect(formatSeconds(250_000_000) == "250ms")
    }
}

@Suite struct InjectionEventLineTests {
    @Test func parsesTheFaultLayersOwnLine() throws {
        let e = InjectionEvent(timeNs: 1_795_969_217_163_457_091, ruleID: "r1", action: .fail, op: .writeback,
                               path: "db/x \"1\".wal", inode: 16_220_322, offset: 4096, length: 65536, errno: 28,
                               pid: 0, comm: nil, writeback: true)
        let back = try InjectionEvent.decode(e.jsonLine())
        #expect(back == e)
        #expect(back.isError)
        #expect(back.markerLabel == "r1 ENOSPC")
        // With "kind" in events.jsonl.
        let line = EventLog.jsonLine(.injection(e))
        #expect(line.hasPrefix("{\"kind\":\"injection\",\"time_ns\":"))
        #expect(EventLog.parseLine(line) == .injection(e))
    }

    @Test func stallsAndReleasesAreNotErrors() throws {
        let stall = InjectionEvent(timeNs: 5, ruleID: "s", action: .stall, op: .writeback, inode: 7)
        let back = try InjectionEvent.decode(stall.jsonLine())
        #expect(back.path == nil && back.offset == -1 && back.comm == nil)
        #expect(!back.isError)
        #expect(back.markerLabel == "s stall")
        let paths = Derivation.errorPaths(injections: [back], traceEvents: [], mountDevice: nil)
        #expect(paths.isEmpty)
    }

    @Test func rejectsOtherLines() {
        #expect((try? InjectionEvent.decode("{\"time_ns\":1,\"op\":\"martian\"}")) == nil)
        #expect((try? InjectionEvent.decode("{\"op\":\"writeback\"}")) == nil)
        #expect((try? InjectionEvent.decode("not json")) == nil)
    }
}

@Suite struct RunnerEventTests {
    @Test func controlAndProcessEventsRoundTrip() {
        let events: [RunEvent] = [
            .control(timeNs: 3, line: "stall writeback path=\"a b\"", result: "ok"),
            .control(timeNs: 4, line: "release", result: "Invalid argument"),
            .process(timeNs: 5, ProcessState(role: "workload", pid: 42, comm: "demo-writer", state: "D", wchan: "balance_dirty_pages")),
            .process(timeNs: 6, ProcessState(role: "daemon", pid: 7, comm: "exe", state: "S", wchan: nil)),
        ]
        for e in events { #expect(EventLog.parseLine(EventLog.jsonLine(e)) == e) }
    }

    @Test func timeInStatesAndSummary() {
        var run = RunData()
        run.apply(.workloadStart(timeNs: 0, command: "w"))
        let r = ProcessState(role: "workload", pid: 1, comm: "w", state: "R", wchan: nil)
        var d = r; d.state = "D"; d.wchan = "balance_dirty_pages"
        run.apply(.process(timeNs: 0, r))
        run.apply(.process(timeNs: 1_000_000_000, d))
        run.apply(.process(timeNs: 4_000_000_000, r))
        run.apply(.control(timeNs: 1_000_000_000, line: "stall writeback", result: "ok"))
        run.apply(.control(timeNs: 4_000_000_000, line: "release", result: "ok"))
        run.apply(.workloadExit(timeNs: 5_000_000_000, status: "exited 0", code: 0))
        let t = run.timeInStates(role: "workload")
        #expect(t.first?.wchan == "balance_dirty_pages" && t.first?.seconds == 3)
        let s = renderSummary(run: run)
        #expect(s.contains("workload blocked (state D): 3.0 s in balance_dirty_pages"))
        #expect(s.contains("plan: at 1.0 s 'stall writeback'"))
        let html = renderHTML(run: run)
        #expect(html.contains("<code>release</code>"))
    }

    @Test func peakBdiInFlight() {
        var run = RunData()
        for (i, (r, w)) in [(1.0, 2.0), (10.0, 38.0), (2.0, 0.0)].enumerated() {
            run.samples.append(Sample(timeNs: Int64(i) * 100_000_000, values: [
                Metric.bdiReclaimable: r * 1048576, Metric.bdiWriteback: w * 1048576, Metric.bdiDirtyThresh: 48 * 1048576]))
        }
        #expect(renderSummary(run: run).contains("peak bdi in flight (BdiReclaimable+BdiWriteback) 48.0 MiB at 0.1 s, BdiDirtyThresh then 48.0 MiB"))
    }
}
