// "Who was told, by which call, or never": `faultfs run` with small Python
// writers that learn of an injected error each through a different call (or
// not at all), asserted in the run folder's summary. Needs root (mount,
// tracefs).
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Glibc
import Testing

/// Runs `faultfs run` with one fault armed at the start and a Python
/// program; returns the summary and the workload's output.
private func toldRun(_ fault: String, _ program: String, extra: [String] = [],
                     file: StaticString = #filePath, line: UInt = #line) throws -> (summary: String, output: String) {
    var result: (String, String) = ("", "")
    try withTemporaryDirectory("who-told") { tmp in
        let out = tmp + "/run"
        let r = try runCommand(try FaultFSBinary.path(), [
            "run", "--quiet", "--interval", "50ms", "--out", out,
        ] + extra + ["--fault", fault, "--at", "0s", "--", "python3", "-c", program], limitSeconds: 200)
        #expect(r.status == 0, "\(r)")
        let summary = (try? String(contentsOfFile: out + "/summary.txt", encoding: .utf8)) ?? ""
        #expect(summary.contains("injections: "), "no summary: \(r)")
        let html = (try? String(contentsOfFile: out + "/report.html", encoding: .utf8)) ?? ""
        let parser = XMLParser(data: Data(html.utf8))
        #expect(parser.parse(), "report.html is not well-formed: \(parser.parserError.map { "\($0)" } ?? "")")
        result = (summary, r.stdout)
    }
    return result
}

private func toldLines(_ summary: String) -> [Substring] {
    summary.split(separator: "\n").filter { $0.hasPrefix("told: ") }
}

private let closeOnly = """
    import os, time
    d = os.environ["FAULTFS_DIR"]
    fd = os.open(d + "/c.bin", os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
    os.write(fd, b"c" * (1 << 20))
    time.sleep(0.3)
    try:
        os.close(fd); print("close ok", flush=True)
    except OSError as e:
        print("close errno %d" % e.errno, flush=True)
    """

// Holds the file open across several samples, then exits without close():
// the kernel closes it at exit, writes the pages back, and the error goes nowhere.
private let exitWithoutClose = """
    import os, time
    d = os.environ["FAULTFS_DIR"]
    fd = os.open(d + "/e.bin", os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
    os.write(fd, b"e" * (1 << 20))
    time.sleep(0.5)
    print("exiting with the file open", flush=True)
    os._exit(0)
    """

private let msyncWriter = """
    import os, mmap, time
    d = os.environ["FAULTFS_DIR"]
    fd = os.open(d + "/m.bin", os.O_CREAT | os.O_TRUNC | os.O_RDWR, 0o644)
    os.ftruncate(fd, 1 << 16)
    m = mmap.mmap(fd, 1 << 16)
    m[0:4] = b"mmmm"
    time.sleep(0.3)
    try:
        m.flush(); print("msync ok", flush=True)
    except OSError as e:
        print("msync errno %d" % e.errno, flush=True)
    m.close(); os.close(fd)
    """

private let plainWrite = """
    import os
    d = os.environ["FAULTFS_DIR"]
    fd = os.open(d + "/w.bin", os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"w" * 4096); print("write ok", flush=True)
    except OSError as e:
        print("write errno %d" % e.errno, flush=True)
    os.close(fd)
    """

// Parent and child each open the file (two open file descriptions); the
// parent writes; both fsync: errseq tells each open file once.
private let twoProcesses = """
    import os, time
    d = os.environ["FAULTFS_DIR"]
    p = d + "/t.bin"
    fd = os.open(p, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        fd2 = os.open(p, os.O_WRONLY)
        os.write(ready_w, b"x")
        os.read(go_r, 1)
        try: os.fsync(fd2); print("child fsync ok", flush=True)
        except OSError as e: print("child fsync errno %d" % e.errno, flush=True)
        os._exit(0)
    os.read(ready_r, 1)
    os.write(fd, b"t" * (1 << 20))
    time.sleep(0.3)
    try: os.fsync(fd); print("parent fsync ok", flush=True)
    except OSError as e: print("parent fsync errno %d" % e.errno, flush=True)
    os.write(go_w, b"y")
    os.waitpid(pid, 0)
    os.close(fd)
    """

private let fsyncWriter = """
    import os, time
    d = os.environ["FAULTFS_DIR"]
    fd = os.open(d + "/d.bin", os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
    os.write(fd, b"d" * (1 << 20))
    print("written", flush=True)
    time.sleep(1)
    try: os.fsync(fd); print("fsync ok", flush=True)
    except OSError as e: print("fsync errno %d" % e.errno, flush=True)
    os.close(fd)
    """

extension AllMountTests {
@Suite(.serialized, .timeLimit(.minutes(10)))
struct WhoWasToldTests {
    @Test("a writer that never fsyncs learns of the writeback error at close(): told via close")
    func toldAtClose() throws {
        let (summary, output) = try toldRun("fail writeback EIO path=c.bin", closeOnly)
        #expect(output.contains("close errno 5"), "\(output)")
        let told = toldLines(summary)
        #expect(told.count == 1 && told[0].contains("python3[") && told[0].contains("got EIO via close after")
                && told[0].hasSuffix(", told by FUSE"), "\(summary)")
        #expect(summary.contains("never told: none"), "\(summary)")
    }

    @Test("a writer too short-lived for the /proc samples is still told via close (the failing request came from its close)")
    func shortLivedToldAtClose() throws {
        let program = """
            import os
            try:
                with open(os.environ["FAULTFS_DIR"] + "/s.bin", "w") as f: f.write("x")
                print("closed ok", flush=True)
            except OSError as e:
                print("close errno %d" % e.errno, flush=True)
            """
        let (summary, output) = try toldRun("fail writeback EIO path=s.bin", program)
        #expect(output.contains("close errno 5"), "\(output)")
        let told = toldLines(summary)
        #expect(told.count == 1 && told[0].contains("got EIO via close after"), "\(summary)")
        #expect(summary.contains("never told: none"), "\(summary)")
    }

    @Test("a writer that exits with the file open: lost at exit, nobody told")
    func lostAtExit() throws {
        let (summary, output) = try toldRun("fail writeback EIO path=e.bin", exitWithoutClose)
        #expect(output.contains("exiting with the file open"), "\(output)")
        #expect(toldLines(summary).isEmpty, "\(summary)")
        #expect(summary.contains("lost at exit: python3["), "\(summary)")
        #expect(summary.contains("exited with e.bin (ino "), "\(summary)")
        #expect(summary.contains("never told: none"), "\(summary)")
    }

    @Test("a store through mmap is told by msync(MS_SYNC)")
    func toldViaMsync() throws {
        let (summary, output) = try toldRun("fail writeback EIO path=m.bin", msyncWriter)
        #expect(output.contains("msync errno 5"), "\(output)")
        let told = toldLines(summary)
        #expect(told.count == 1 && told[0].contains("got EIO via msync after"), "\(summary)")
    }

    @Test("without the writeback cache the write() itself fails: told via write")
    func toldViaWrite() throws {
        let (summary, output) = try toldRun("fail write EIO path=w.bin", plainWrite, extra: ["-o", "nowriteback"])
        #expect(output.contains("write errno 5"), "\(output)")
        let told = toldLines(summary)
        #expect(told.count == 1 && told[0].contains("got EIO via write after") && told[0].hasSuffix(", told by FUSE"), "\(summary)")
        #expect(summary.contains("never told: none"), "\(summary)")
    }

    @Test("two processes with the file open: both are told (one report per open file)")
    func bothProcessesTold() throws {
        let (summary, output) = try toldRun("fail writeback EIO path=t.bin", twoProcesses)
        #expect(output.contains("parent fsync errno 5") && output.contains("child fsync errno 5"), "\(output)")
        let told = toldLines(summary).filter { $0.contains("got EIO via fsync") }
        let threads = Set(told.compactMap { $0.split(separator: " ").dropFirst(2).first })
        #expect(told.count == 2 && threads.count == 2, "\(summary)")
        #expect(summary.contains("never told: none"), "\(summary)")
    }

    @Test("block mode: ext4 records the disk's error on its own inode and tells the fsync; the summary names ext4")
    func blockModeToldByExt4() throws {
        try MountedFS.requirePrerequisites()
        guard access("/usr/sbin/mkfs.ext4", X_OK) == 0 || access("/sbin/mkfs.ext4", X_OK) == 0 else {
            Issue.record("mkfs.ext4 missing (apt-get install e2fsprogs)"); return
        }
        try withTemporaryDirectory("who-told-block") { tmp in
            let out = tmp + "/run"
            let r = try runCommand(try FaultFSBinary.path(), [
                "run", "--fs", "ext4", "--size", "64M", "--quiet", "--interval", "50ms", "--out", out,
                "--fault", "fail write EIO file=d.bin", "--when", "^written",
                "--", "python3", "-c", fsyncWriter,
            ], limitSeconds: 300)
            #expect(r.stdout.contains("fsync errno 5"), "\(r)")
            let summary = (try? String(contentsOfFile: out + "/summary.txt", encoding: .utf8)) ?? ""
            let told = toldLines(summary)
            #expect(told.contains { $0.contains("got EIO via fsync on ino ") && $0.hasSuffix(", told by ext4 (block mode)") }, "\(summary)")
        }
    }
}
}
