import Testing
import FaultRules
@testable import MonitorCore

@Suite struct DerivationTests {
    let dev = DeviceID(major: 0, minor: 39)

    func line(_ task: String, _ pid: Int, _ t: String, _ event: String, _ fields: String) -> TraceEvent {
        TraceParser.parse("\(task)-\(pid) [000] ..... \(t): \(event): \(fields)")!
    }
    func setErr(_ t: String, ino: String, dev: String = "0:39") -> TraceEvent {
        line("pll2", 100, t, "filemap_set_wb_err", "dev=\(dev) ino=\(ino) errseq=0x5")
    }
    func check(_ task: String, _ pid: Int, _ t: String, ino: String, file: String = "00000000aaaa", old: String, new: String) -> TraceEvent {
        line(task, pid, t, "file_check_and_advance_wb_err", "file=\(file) dev=0:39 ino=\(ino) old=\(old) new=\(new)")
    }
    func inj(_ sec: Double, ino: UInt64, errno: Int32 = 5) -> InjectionEvent {
        InjectionEvent(timeNs: Int64((sec * 1e9).rounded()), ruleID: "r1", action: .fail, op: .writeback, path: "/f", inode: ino, errno: errno)
    }

    @Test func fixtureTraceToldOncePerReport() throws {
        let events = TraceParser.parseAll(try fixture("trace.txt"))
        // Injections just before each failed FUSE_WRITE reply in the fixture.
        let injections = events.compactMap { e -> InjectionEvent? in
            guard case .fuseRequestEnd(let r) = e.payload, r.error == -5 else { return nil }
            return InjectionEvent(timeNs: e.timeNs - 1_000, ruleID: "r1", action: .fail, op: .writeback, path: "/mnt/f", inode: 0xf780a2, errno: 5)
        }
        #expect(injections.count == 8)
        let paths = Derivation.errorPaths(injections: injections, traceEvents: events, mountDevice: dev)
        #expect(paths.count == 8)
        #expect(paths.allSatisfy { $0.status == .told })
        #expect(paths.allSatisfy { $0.told.count == 1 && $0.told[0].task == "python3" && $0.told[0].pid == 20466 })
        #expect(paths.allSatisfy { $0.told[0].reportedErrno == 5 && $0.told[0].coversInjections == 8 })
        #expect(paths.allSatisfy { $0.recorded?.task == "pll2" })
        let first = try #require(paths.first?.told.first)
        #expect(abs(first.delayMs - (3368.529223 - 3368.526668) * 1000) < 0.001)
    }

    @Test func toldOnce() {
        let paths = Derivation.errorPaths(
            injections: [inj(1.0, ino: 0x10)],
            traceEvents: [setErr("1.001", ino: "0x10"), check("app", 7, "1.5", ino: "0x10", old: "0x0", new: "0x1005"),
                          // The second fsync: nothing new, not a report.
                          check("app", 7, "1.6", ino: "0x10", old: "0x1005", new: "0x1005")],
            mountDevice: dev)
        #expect(paths.count == 1)
        #expect(paths[0].status == .told)
        #expect(paths[0].told.count == 1)
        #expect(paths[0].told[0].task == "app")
        #expect(abs(paths[0].told[0].delayMs - 500) < 1e-6)
        #expect(abs(paths[0].recorded!.delayMs - 1) < 1e-6)
        #expect(paths[0].told[0].call == Derivation.fsyncFamily)
    }

    @Test func neverToldWhenNoOneFsyncs() {
        let paths = Derivation.errorPaths(
            injections: [inj(1.0, ino: 0x10), inj(2.0, ino: 0x20)],
            traceEvents: [setErr("1.001", ino: "0x10"), setErr("2.001", ino: "0x20"),
                          // Someone fsyncs the *other* inode, and a report on another device.
                          check("app", 7, "3.0", ino: "0x20", old: "0x0", new: "0x1005"),
                          line("x", 1, "3.1", "file_check_and_advance_wb_err", "file=1 dev=8:1 ino=0x10 old=0x0 new=0x1005")],
            mountDevice: dev)
        #expect(paths[0].status == .neverTold)
        #expect(paths[0].recorded != nil)
        #expect(paths[1].status == .told)
    }

    @Test func twoInjectionsOneReport() {
        let paths = Derivation.errorPaths(
            injections: [inj(1.0, ino: 0x10), inj(1.2, ino: 0x10, errno: 28)],
            traceEvents: [setErr("1.0005", ino: "0x10"), setErr("1.2005", ino: "0x10"),
                          check("app", 7, "2.0", ino: "0x10", old: "0x0", new: "0x101c")],
            mountDevice: dev)
        #expect(paths.map(\.status) == [.told, .told])
        #expect(paths[0].told[0].timeNs == paths[1].told[0].timeNs)
        #expect(paths[0].told[0].coversInjections == 2)
        // errseq keeps the latest errno: the EIO injection is reported as ENOSPC.
        #expect(paths[0].told[0].reportedErrno == 28)
        #expect(paths[0].recorded!.timeNs != paths[1].recorded!.timeNs)
    }

    @Test func eachOpenFileToldOnceAndLaterErrorsToldAgain() {
        let paths = Derivation.errorPaths(
            injections: [inj(1.0, ino: 0x10), inj(3.0, ino: 0x10)],
            traceEvents: [setErr("1.001", ino: "0x10"),
                          check("a", 1, "2.0", ino: "0x10", file: "f1", old: "0x0", new: "0x1005"),
                          check("b", 2, "2.1", ino: "0x10", file: "f2", old: "0x0", new: "0x1005"),
                          setErr("3.001", ino: "0x10"),
                          check("a", 1, "4.0", ino: "0x10", file: "f1", old: "0x1005", new: "0x1025")],
            mountDevice: dev)
        #expect(paths[0].told.map(\.task) == ["a", "b"])
        #expect(paths[1].told.map(\.task) == ["a"])
        #expect(paths[1].told[0].timeNs == 4_000_000_000)
    }

    @Test func notRecordedAndInodeMap() {
        // An fsync reply error: no filemap_set_wb_err follows.
        let direct = Derivation.errorPaths(injections: [inj(1.0, ino: 0x10)], traceEvents: [], mountDevice: dev)
        #expect(direct[0].status == .notRecorded)
        // The fault layer logged the backing inode 999; the map translates it.
        let mapped = Derivation.errorPaths(
            injections: [inj(1.0, ino: 999)],
            traceEvents: [setErr("1.001", ino: "0x10"), check("app", 7, "1.5", ino: "0x10", old: "0x0", new: "0x1005")],
            mountDevice: nil, inodeMap: [999: 0x10])
        #expect(mapped[0].status == .told && mapped[0].kernelIno == 0x10)
        // A record *before* the injection is not this injection's, unless within the slack.
        let early = [setErr("0.9995", ino: "0x10")]
        #expect(Derivation.errorPaths(injections: [inj(1.0, ino: 0x10)], traceEvents: early, mountDevice: dev)[0].recorded == nil)
        #expect(Derivation.errorPaths(injections: [inj(1.0, ino: 0x10)], traceEvents: early, mountDevice: dev,
                                      slackNs: 1_000_000)[0].recorded != nil)
    }

    @Test func errnoNames() {
        #expect(errnoLabel(5) == "EIO")
        #expect(errnoLabel(-28) == "ENOSPC")
        #expect(errnoLabel(300) == "errno 300")
    }
}
