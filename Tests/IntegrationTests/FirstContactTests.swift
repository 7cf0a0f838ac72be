// What a new user tries in the first hour (issue 8): following the events
// with the real `tail`, reading `control` and `stats` with tools that trust
// the file's size, unmounting lazily during a stall, `faultfs run` with a bad
// or late plan step, and the control file's answers to common mistakes.
import Foundation
import Glibc
import Testing

/// A program started in the background whose stdout and stderr go to files,
/// stopped (SIGTERM, then SIGKILL) by `stop()`.
final class BackgroundProgram {
    let process = Process()
    let out: TemporaryFile
    let err: TemporaryFile

    init(_ executable: String, _ arguments: [String]) throws {
        out = try TemporaryFile(prefix: "bg-out")
        err = try TemporaryFile(prefix: "bg-err")
        process.executableURL = URL(fileURLWithPath: try resolveExecutable(executable))
        process.arguments = arguments
        process.standardOutput = out.handle
        process.standardError = err.handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    var stdout: String { out.contents }
    var stderr: String { err.contents }

    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        if !pollUntil(polls: 500, { !process.isRunning }) { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

/// Opens `path`, asks fstat for its size, and reads exactly that many bytes
/// in one pread: what a reader that trusts the size gets.
private func readBySize(_ path: String) throws -> (size: Int, bytes: [UInt8], more: Int) {
    let fd = try openOrThrow(path, O_RDONLY)
    defer { close(fd) }
    var st = stat()
    try check("fstat \(path)", sys { fstat(fd, &st) })
    let size = Int(st.st_size)
    let (outcome, bytes) = preadBytes(fd, count: size, at: 0)
    _ = try check("pread \(path)", outcome)
    let (_, beyond) = preadBytes(fd, count: 4096, at: size)
    return (size, bytes, beyond.count)
}

/// Fails `close` of a new file named `name` through `fail flush EIO path=t*`:
/// exactly one injection, one line in `events`.
private func injectOne(_ fs: MountedFS, _ name: String) throws {
    let fd = try openOrThrow(fs.path(name), O_CREAT | O_WRONLY)
    #expect(sys { close(fd) }.errno == EIO, "the flush rule failed close of \(name)")
}

extension AllMountTests {
    @Suite(.serialized)
    struct FirstContactTests {
        // MARK: defect 3: tail -f on events

        @Test("tail -f / -F, with and without inotify, print each injection as it happens",
              arguments: [["-f"], ["-F"], ["---disable-inotify", "-f"], ["---disable-inotify", "-F"]])
        func tailFollowsEvents(_ flags: [String]) throws {
            try withMount { fs in
                try fs.arm("fail flush EIO path=t*")
                try injectOne(fs, "t0")  // an event before tail starts: its first screen
                let tail = try BackgroundProgram("tail", flags + ["-s", "0.2", fs.controlFile("events")])
                defer { tail.stop() }
                func flushLines() -> Int { tail.stdout.split(separator: "\n").filter { $0.contains("\"op\":\"flush\"") }.count }
                #expect(pollUntil(polls: 3000) { flushLines() >= 1 }, "tail's first screen: \(tail.stdout) \(tail.stderr)")
                // New injections, in two rounds: each must show up while tail runs.
                try injectOne(fs, "t1")
                #expect(pollUntil(polls: 3000) { flushLines() >= 2 }, "tail \(flags) after one more injection: \(tail.stdout) \(tail.stderr)")
                try injectOne(fs, "t2")
                try injectOne(fs, "t3")
                #expect(pollUntil(polls: 3000) { flushLines() >= 4 }, "tail \(flags) after three more: \(tail.stdout) \(tail.stderr)")
                #expect(tail.stdout.contains("\"path\":\"t3\""), "\(tail.stdout)")
                #expect(!tail.stderr.contains("truncated"), "tail saw the size shrink: \(tail.stderr)")
                // A reader that trusts the size sees every line, whole.
                let events = try readBySize(fs.controlFile("events"))
                #expect(events.bytes.count == events.size && events.more == 0, "\(events.size) \(events.bytes.count) \(events.more)")
                #expect(String(decoding: events.bytes, as: UTF8.self).split(separator: "\n").count == 4)
            }
        }

        // MARK: defect 4: the size of control and stats

        @Test("control and stats: st_size is the length of what a reader reads (tail -n1, head -c, grep, fstat)")
        func controlAndStatsSizes() throws {
            try withMount { fs in
                // The last write to control is short; the text it leaves is long.
                try fs.arm("fail flush EIO id=first path=a", "delay write 10ms id=second path=b")
                try fs.arm("capacity 64M")
                let text = fs.controlText()
                let lines = text.split(separator: "\n").map(String.init)
                #expect(lines.count >= 4, "\(text)")

                let bySize = try readBySize(fs.controlFile())
                #expect(bySize.size == text.utf8.count, "fstat size \(bySize.size) vs \(text.utf8.count) bytes read by cat")
                #expect(String(decoding: bySize.bytes, as: UTF8.self) == text && bySize.more == 0)

                let tail = try runCommand("tail", ["-n1", fs.controlFile()])
                #expect(tail.status == 0 && tail.stdout == lines.last! + "\n", "tail -n1: \(tail)")
                let tail2 = try runCommand("tail", ["-n2", fs.controlFile()])
                #expect(tail2.stdout == lines.suffix(2).joined(separator: "\n") + "\n", "tail -n2: \(tail2)")
                let head = try runCommand("head", ["-c", String(text.utf8.count), fs.controlFile()])
                #expect(head.stdout == text, "head -c: \(head)")
                let grep = try runCommand("grep", ["-c", "id=", fs.controlFile()])
                #expect(grep.stdout == "2\n", "grep: \(grep)")

                // After another (shorter) write, the size follows the text again.
                try fs.arm("clear second")
                let after = fs.controlText()
                #expect(try readBySize(fs.controlFile()).size == after.utf8.count)
                #expect(try runCommand("tail", ["-n1", fs.controlFile()]).stdout == after.split(separator: "\n").last! + "\n")

                // stats: whole lines, the size of what is read.
                let stats = try readBySize(fs.controlFile("stats"))
                #expect(stats.size == stats.bytes.count && stats.more == 0 && stats.size > 0)
                let statsText = String(decoding: stats.bytes, as: UTF8.self)
                let header = statsText.split(separator: "\n").first!.split(separator: " ").count
                let lastStats = try runCommand("tail", ["-n1", fs.controlFile("stats")])
                #expect(lastStats.stdout.split(separator: " ").count == header, "a whole row: \(lastStats)")
                let tailStats = try runCommand("tail", ["-c", "+1", fs.controlFile("stats")])
                #expect(tailStats.stdout.count == statsText.count, "\(tailStats)")
            }
        }

        // MARK: defect 5: lazy unmount during a stall

        @Test("a lazy unmount during a stall releases the held writeback; the daemon exits once the file is closed",
              arguments: ["faultfs umount -l", "umount -l", "fusermount3 -u -z"])
        func lazyUnmountReleasesStalls(_ command: String) throws {
            try withMount { fs in
                try fs.arm("stall writeback path=w.dat")
                // The writer is its own process: this one must hold no file of
                // the mount while writeback is stalled, or forking the unmount
                // command would block (closing an O_CLOEXEC file flushes it).
                let writer = try BackgroundProgram("dd", ["if=/dev/zero", "of=\(fs.path("w.dat"))", "bs=64k", "count=1", "conv=fsync", "status=none"])
                defer { writer.stop() }
                try #require(pollUntil(polls: 3000) { fs.counter("writeback", "stalled_now") > 0 }, "the writeback stalled")
                #expect(writer.process.isRunning, "dd waits in fsync for the stalled writeback")

                var words = command.split(separator: " ").map(String.init)
                let name = words.removeFirst()
                let unmount = try runCommand(name == "faultfs" ? try FaultFSBinary.path() : name, words + [fs.mountpoint], limitSeconds: 60)
                #expect(unmount.status == 0, "\(command): \(unmount)")
                #expect(!MountTable.hasFaultFSMount(fs.mountpoint), "detached at once")
                if name == "faultfs" {
                    #expect(unmount.stdout.contains("detached \(fs.mountpoint)") && unmount.stdout.contains("daemon"),
                            "says what it did: \(unmount)")
                }

                // The held request goes on: dd's fsync returns and succeeds
                // (the writeback was let through, not failed); then dd closes
                // the file, nothing is open, and the daemon exits.
                #expect(pollUntil(polls: 3000) { !writer.process.isRunning }, "dd returned from fsync")
                writer.process.waitUntilExit()
                #expect(writer.process.terminationStatus == 0, "dd: \(writer.stderr)")
                #expect(pollUntil(polls: 1000) { !fs.isRunning }, "the daemon exits once nothing is open; log: \(fs.log)")
                #expect(try backingBytes(fs, "w.dat") == [UInt8](repeating: 0, count: 65536), "the released writeback stored the data")
                #expect(fs.log.contains("left the mount table"), "\(fs.log)")
            }
        }

        // MARK: defect 2: faultfs run checks its plan

        @Test("faultfs run refuses a bad --fault or --plan line before mounting or starting anything")
        func runRefusesABadPlan() throws {
            try withTemporaryDirectory("run-plan") { dir in
                let marker = dir + "/ran", work = dir + "/work"
                try check("mkdir", sys { mkdir(work, 0o755) })
                let bad = try runCommand(try FaultFSBinary.path(), [
                    "run", "--quiet", "--no-trace", "--dir", work, "--out", dir + "/out1",
                    "--fault", "fail writeback EBOGUS", "--at", "1s", "--", "touch", marker,
                ], limitSeconds: 120)
                #expect(bad.status != 0, "\(bad)")
                #expect(bad.stderr.contains("'fail writeback EBOGUS': line 1, column 16: unknown errno \"EBOGUS\""), "\(bad.stderr)")
                #expect(access(marker, F_OK) != 0, "the workload did not run")
                #expect(access(dir + "/out1", F_OK) != 0, "no run folder")

                try writeFile(dir + "/plan", "at 1s: fail flush EIO\nat 2s: stall wrtie\n")
                let badFile = try runCommand(try FaultFSBinary.path(), [
                    "run", "--quiet", "--no-trace", "--dir", work, "--out", dir + "/out2", "--plan", dir + "/plan", "--", "touch", marker,
                ], limitSeconds: 120)
                #expect(badFile.status != 0, "\(badFile)")
                #expect(badFile.stderr.contains("plan line 2: 'stall wrtie': line 1, column 7: unknown operation \"wrtie\""), "\(badFile.stderr)")
                #expect(access(marker, F_OK) != 0 && access(dir + "/out2", F_OK) != 0)
                #expect(!MountTable.isMountPoint(work), "nothing mounted")
            }
        }

        @Test("faultfs run: a step the daemon refuses, or whose time never comes, makes the exit status non-zero and is in summary.txt")
        func runReportsRefusedAndLateSteps() throws {
            try withTemporaryDirectory("run-plan") { dir in
                let refused = try runCommand(try FaultFSBinary.path(), [
                    "run", "--quiet", "--no-trace", "--out", dir + "/refused", "--fault", "clear NOSUCHID", "--", "true",
                ], limitSeconds: 120)
                #expect(refused.status != 0, "\(refused)")
                let summary = textOfFile(dir + "/refused/summary.txt")
                #expect(summary.contains("'clear NOSUCHID' -> refused: line 1, column 7: no rule with id \"NOSUCHID\""), "\(summary)")
                #expect(refused.stderr.contains("the plan did not run as written"), "\(refused.stderr)")

                let late = try runCommand(try FaultFSBinary.path(), [
                    "run", "--quiet", "--no-trace", "--out", dir + "/late", "--fault", "fail flush EIO", "--at", "10m", "--", "true",
                ], limitSeconds: 120)
                #expect(late.status != 0, "\(late)")
                let lateSummary = textOfFile(dir + "/late/summary.txt")
                #expect(lateSummary.contains("'at 600s: fail flush EIO' never applied: the workload ended"), "\(lateSummary)")
                #expect(late.stderr.contains("never applied"), "\(late.stderr)")
                #expect(!MountTable.entries().contains { $0.type == "fuse.faultfs" && $0.mountPoint.contains("faultfs-run.") })
            }
        }

        // MARK: what a new user expects

        @Test("release and clear of an unknown id are both refused, with the reason in control")
        func releaseAndClearOfUnknownIDs() throws {
            try withMount { fs in
                #expect(fs.control("release NOSUCHID").errno == EINVAL)
                #expect(fs.controlText().contains("# error: line 1, column 9: no stall rule with id \"NOSUCHID\""), "\(fs.controlText())")
                #expect(fs.control("clear NOSUCHID").errno == EINVAL)
                #expect(fs.controlText().contains("# error: line 1, column 7: no rule with id \"NOSUCHID\""), "\(fs.controlText())")
                let ctl = try fs.faultfs(["ctl", fs.mountpoint, "release NOSUCHID"])
                #expect(ctl.status == 1 && ctl.stderr.contains("no stall rule with id"), "\(ctl)")
            }
        }

        @Test("a refused megabyte line is echoed cut to a sane length, control bytes escaped")
        func refusedLineIsCut() throws {
            try withMount { fs in
                let junk = "fail " + String(repeating: "w", count: 1 << 20) + "\u{1b}[2J EIO"
                #expect(fs.control(junk).errno == EINVAL)
                let text = fs.controlText()
                let error = text.split(separator: "\n").first { $0.hasPrefix("# error: ") }
                #expect(error != nil, "\(text.prefix(500))")
                #expect((error?.count ?? 0) < 300, "\(error?.count ?? 0) characters")
                #expect(error?.contains("more characters)") == true && !text.contains("\u{1b}"), "\(String(describing: error))")
                #expect(text.utf8.count < 2000)
            }
        }

        @Test("capacity 1.5G is understood; clear keeps it and control says so; capacity off removes it")
        func capacityKeptByClear() throws {
            try withMount { fs in
                try fs.arm("capacity 1.5G", "fail flush EIO")
                #expect(fs.controlText().contains("# capacity 1610612736 bytes"), "\(fs.controlText())")
                try fs.arm("clear")
                let text = fs.controlText()
                #expect(fs.ruleLines().isEmpty)
                #expect(text.contains("# capacity 1610612736 bytes") && text.contains("(kept by clear; 'capacity off' removes it)"), "\(text)")
                try fs.arm("capacity off")
                #expect(!fs.controlText().contains("capacity"), "\(fs.controlText())")
            }
        }

        @Test("shell printf of two lines is two writes: the first applies although the second is refused; faultfs ctl is one write")
        func printfIsOneWritePerLine() throws {
            try withMount { fs in
                let printf = try runCommand("bash", ["-c", "printf 'fail flush EIO id=one\\nfail bogus EIO\\n' > \(fs.controlFile())"])
                #expect(printf.status != 0, "\(printf)")
                #expect(fs.ruleLines() == ["fail flush EIO id=one"], "the first line's write applied alone: \(fs.controlText())")
                try fs.arm("clear")
                let ctl = try fs.faultfs(["ctl", fs.mountpoint, "fail flush EIO id=one", "fail bogus EIO"])
                #expect(ctl.status == 1 && fs.ruleLines().isEmpty, "all or nothing: \(ctl) \(fs.controlText())")
            }
        }
    }
}
