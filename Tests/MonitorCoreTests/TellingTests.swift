import Testing
import FaultRules
@testable import MonitorCore

// "Who was told": the syscall trace lines, the holdings from /proc samples,
// and the report's categories. The told-*.jsonl fixtures are cut from real
// `faultfs run` folders on Linux 6.18 (see Fixtures/README.md).
@Suite struct TellingTests {
    let dev = DeviceID(major: 0, minor: 39)

    func run(_ name: String) throws -> RunData { RunData.load(samplesJSONL: "", eventsJSONL: try fixture(name)) }
    func tellings(_ run: RunData) -> [Telling] {
        Derivation.tellings(injections: run.injections, traceEvents: run.traceEvents, openFiles: run.openFiles, mountDevice: run.mountDevice)
    }
    func ev(_ line: String) -> TraceEvent { TraceParser.parse(line)! }

    @Test func syscallLinesWithTgid() throws {
        let enter = ev("         python3-1414    (   1414) [000] .....  1039.460844: sys_close(fd: 3)")
        #expect(enter.name == "sys_enter_close" && enter.pid == 1414 && enter.tgid == 1414 && enter.task == "python3")
        #expect(enter.payload == .syscallEnter(SyscallEnter(call: "close", fd: 3)))
        let exit = ev("  my task-7-x-1415 (   1414) [001] .....  1039.462381: sys_close -> 0xfffffffffffffffb")
        #expect(exit.name == "sys_exit_close" && exit.task == "my task-7-x" && exit.pid == 1415 && exit.tgid == 1414)
        #expect(exit.payload == .syscallExit(SyscallExit(call: "close", ret: -5)))
        if case .syscallExit(let x) = exit.payload { #expect(x.errno == 5) }
        let hexFd = ev("a-1 (-------) [000] ..... 1.000000: sys_fsync(fd: 0x0000000a)")
        #expect(hexFd.tgid == nil && hexFd.payload == .syscallEnter(SyscallEnter(call: "fsync", fd: 10)))
        let msync = ev("a-1 [000] ..... 1.0: sys_msync(start: 7f00, len: 10000, flags: 4)")
        #expect(msync.payload == .syscallEnter(SyscallEnter(call: "msync", fd: nil)))
        let ok = ev("a-1 [000] ..... 1.0: sys_write -> 0x1000")
        if case .syscallExit(let x) = ok.payload { #expect(x.errno == 0 && x.ret == 4096) } else { Issue.record("\(ok.payload)") }
        let gone = ev("python3-1256 (1256) [000] ..... 1034.236181: sched_process_exit: comm=python3 pid=1256 prio=120 group_dead=true")
        #expect(gone.payload == .processExit(ProcessExit(pid: 1256, groupDead: true)))
        // The older lines still parse the same.
        let check = ev("python3-20466 [000] ...1. 3368.529223: file_check_and_advance_wb_err: file=00000000ba5d258d dev=0:39 ino=0xf780a2 old=0x0 new=0x1005")
        #expect(check.tgid == nil && check.pid == 20466)
    }

    @Test func fdInfo() {
        let parsed = FdInfo.parse("pos:\t4096\nflags:\t0100001\nmnt_id:\t1234\nino:\t16229060\n")
        #expect(parsed?.mountID == 1234 && parsed?.ino == 16229060)
        #expect(FdInfo.parse("pos:\t0\nflags:\t02\nmnt_id:\t5\n") == nil, "before 5.14 there is no ino")
    }

    @Test func openFilesRoundTrip() {
        let o = OpenFiles(timeNs: 5, pid: 7, comm: "a \"b\"", files: [OpenFile(fd: 3, ino: 99), OpenFile(fd: 4, ino: 1 << 40)])
        #expect(EventLog.parseLine(EventLog.jsonLine(.openFiles(o))) == .openFiles(o))
        let none = OpenFiles(timeNs: 6, pid: 7, comm: "x", files: [])
        #expect(EventLog.parseLine(EventLog.jsonLine(.openFiles(none))) == .openFiles(none))
    }

    @Test func closeTellsTheWriterThroughItsFd() throws {
        let r = try run("told-close.jsonl")
        let t = tellings(r)
        #expect(t.count == 1 && t[0].status == .told)
        let told = try #require(t.first?.told.first)
        #expect(told.call.call == "close" && told.call.errno == 5 && told.call.tid == 1414 && told.call.fd == 3)
        #expect(told.call.resolvedBy == .fd && told.call.ino == 0xf7a2d7)
        let summary = renderSummary(run: r)
        #expect(summary.contains("told: thread python3[1414] got EIO via close after "), "\(summary)")
        #expect(summary.contains(", told by FUSE\n"), "\(summary)")
        #expect(summary.contains("never told: none"))
        #expect(renderHTML(run: r).contains("<code>close</code> (told by FUSE; fd 3 in the sampled /proc/1414/fd)"))
    }

    @Test func exitWithTheFileOpenIsLostAtExit() throws {
        let r = try run("told-exit.jsonl")
        let t = tellings(r)
        #expect(t.count == 1 && t[0].status == .lostAtExit)
        #expect(t[0].lostAtExit.map(\.holder) == [Holder(pid: 1256, comm: "python3")])
        #expect(t[0].holders == [Holder(pid: 1256, comm: "python3")])
        let summary = renderSummary(run: r)
        #expect(summary.contains("lost at exit: python3[1256] exited with e.bin (ino 16229060) open, 1 injection(s) never told"), "\(summary)")
        #expect(!summary.split(separator: "\n").contains { $0.hasPrefix("told: ") }, "\(summary)")
        #expect(summary.contains("never told: none"), "\(summary)")
        #expect(renderHTML(run: r).contains("<span class=\"never\">lost at exit</span>: python3[1256] exited with the file open"))
    }

    // Too short-lived for the /proc samples: the failing WRITE was sent from
    // the closing thread (fuse_request_send), joined to the reply on its id.
    @Test func shortLivedCloseIsToldThroughTheRequest() throws {
        let r = try run("told-short-close.jsonl")
        #expect(r.openFiles.isEmpty)
        let t = tellings(r)
        let told = try #require(t.first?.told.first)
        #expect(t.count == 1 && t[0].status == .told)
        #expect(told.call.call == "close" && told.call.resolvedBy == .request && told.call.ino == t[0].path.kernelIno)
        #expect(renderSummary(run: r).contains("got EIO via close after "))
    }

    @Test func shortLivedExitIsLostAtExitThroughTheRequest() throws {
        let r = try run("told-short-exit.jsonl")
        let t = tellings(r)
        #expect(t.count == 1 && t[0].status == .lostAtExit)
        #expect(t[0].lostAtExit.map(\.holder) == [Holder(pid: 17735, comm: "python3")])
        #expect(renderSummary(run: r).contains("lost at exit: python3[17735] exited with f (ino 16319926) open"))
    }

    @Test func fuseRequestSendLine() {
        let e = ev("python3-17735 (17735) [000] ...3. 2562.337574: fuse_request_send: connection 42 req 60 opcode 16 (FUSE_WRITE) len 81 ")
        #expect(e.payload == .fuseRequestSend(FuseRequestSend(connection: 42, req: 60, opcode: 16)))
    }

    @Test func requestSendsAreKeptOnlyForFailedRequests() {
        var filter = RequestSendFilter(capacity: 2)
        let sends = (1...4).map { ev("w-7 (7) [000] ..... 1.00000\($0): fuse_request_send: connection 42 req \($0) opcode 16 (FUSE_WRITE) len 81") }
        let other = ev("w-7 (7) [000] ..... 1.000005: sys_close(fd: 3)")
        #expect(filter.pass(sends + [other]) == [other])
        let fail3 = ev("d-9 (8) [000] ..... 1.000010: fuse_request_end: connection 42 req 3 len 16 error -5")
        let fail1 = ev("d-9 (8) [000] ..... 1.000011: fuse_request_end: connection 42 req 1 len 16 error -5")
        let fail2 = ev("d-9 (8) [000] ..... 1.000012: fuse_request_end: connection 42 req 2 len 16 error -5")
        // Capacity 2: sends 1 and 2 moved to the older generation, still there; none is let through twice.
        #expect(filter.pass([fail3, fail1]) == [sends[2], fail3, sends[0], fail1])
        #expect(filter.pass([fail2, fail2]) == [sends[1], fail2, fail2])
    }

    @Test func msyncIsNamedByItsExit() throws {
        let r = try run("told-msync.jsonl")
        let t = tellings(r)
        let told = try #require(t.first?.told.first)
        #expect(t.count == 1 && told.call.call == "msync" && told.call.resolvedBy == .errseq)
        #expect(renderSummary(run: r).contains(" got EIO via msync after "))
    }

    @Test func twoOpenFilesBothTold() throws {
        let r = try run("told-two.jsonl")
        let t = tellings(r)
        #expect(t.count == 1)
        #expect(t[0].told.count == 2 && Set(t[0].told.map(\.call.tid)).count == 2)
        #expect(t[0].told.allSatisfy { $0.call.call == "fsync" && $0.call.resolvedBy == .errseq && $0.coversInjections == 1 })
    }

    // Synthetic: a holder that closed the file (traced close) before the
    // error is not a holder; one still holding it is listed under never told.
    @Test func neverToldListsWhoHadItOpen() {
        let injection = InjectionEvent(timeNs: 2_000_000_000, ruleID: "r1", action: .fail, op: .writeback, path: "f", inode: 0x10, errno: 5)
        let trace = [
            ev("a-10 (10) [000] ..... 1.500000: sys_close(fd: 3)"),
            ev("faultfs-5 (4) [000] ..... 2.000001: filemap_set_wb_err: dev=0:39 ino=0x10 errseq=0x0"),
            ev("a-10 (10) [000] ..... 3.000000: sched_process_exit: comm=a pid=10 prio=120 group_dead=true"),
        ]
        let open = [
            OpenFiles(timeNs: 1_000_000_000, pid: 10, comm: "a", files: [OpenFile(fd: 3, ino: 0x10)]),
            OpenFiles(timeNs: 1_000_000_000, pid: 11, comm: "b", files: [OpenFile(fd: 4, ino: 0x10)]),
            OpenFiles(timeNs: 3_100_000_000, pid: 10, comm: "a", files: []),
        ]
        let t = Derivation.tellings(injections: [injection], traceEvents: trace, openFiles: open, mountDevice: dev)
        #expect(t.count == 1 && t[0].status == .neverTold)
        #expect(t[0].holders == [Holder(pid: 11, comm: "b")])
        #expect(t[0].lostAtExit.isEmpty)
        var r = RunData(settings: [Setting(SettingKey.mountDevice, "0:39")], injections: [injection], traceEvents: trace)
        r.openFiles = open
        #expect(renderSummary(run: r).contains("never told: 1 injection(s) on f (ino 16) by any traced call; had it open: b[11]"))
    }

    // An error replied to a request is returned by the requesting thread's call.
    @Test func directErrorToldToTheRequestingThread() {
        let injection = InjectionEvent(timeNs: 1_000_000_000, ruleID: "r1", action: .fail, op: .syncwrite, path: "w", inode: 0x20,
                                       errno: 5, pid: 31)
        let trace = [
            ev("other-40 (40) [000] ..... 1.000100: sys_write -> 0xfffffffffffffffb"),
            ev("py-31 (30) [001] ..... 1.000200: sys_write -> 0xfffffffffffffffb"),
        ]
        let t = Derivation.tellings(injections: [injection], traceEvents: trace, openFiles: [], mountDevice: dev)
        #expect(t.count == 1 && t[0].status == .told)
        #expect(t[0].told.map(\.call.tid) == [31] && t[0].told[0].call.call == "write")
    }

    @Test func blockModeNamesTheInnerFileSystem() {
        let trace = [
            ev("py-50 (50) [000] ..... 1.000000: sys_fsync(fd: 3)"),
            ev("kworker-9 (9) [000] ..... 1.000100: filemap_set_wb_err: dev=7:0 ino=0xc errseq=0x0"),
            ev("py-50 (50) [000] ..... 1.000200: file_check_and_advance_wb_err: file=00000000aa dev=7:0 ino=0xc old=0x0 new=0x1005"),
            ev("py-50 (50) [000] ..... 1.000300: sys_fsync -> 0xfffffffffffffffb"),
            ev("kworker-9 (9) [000] ..... 2.000000: filemap_set_wb_err: dev=7:0 ino=0xd errseq=0x0"),
        ]
        var r = RunData(settings: [Setting(SettingKey.mountDevice, "7:0"), Setting("block.fs", "ext4")], traceEvents: trace)
        r.openFiles = [OpenFiles(timeNs: 500_000_000, pid: 50, comm: "py", files: [OpenFile(fd: 3, ino: 0xc), OpenFile(fd: 4, ino: 0xd)])]
        let summary = renderSummary(run: r)
        #expect(summary.contains("told: thread py[50] got EIO via fsync on ino 12, told by ext4 (block mode)"), "\(summary)")
        #expect(summary.contains("never told: ino 13 (open in py[50]) (recorded by ext4 (block mode), no traced call returned it)"), "\(summary)")
        let html = renderHTML(run: r)
        #expect(html.contains("<h2>Told by ext4 (block mode)</h2>"))
        #expect(html.contains("<li>told: thread py[50] got EIO via fsync on ino 12, told by ext4 (block mode)</li>"))
    }
}
