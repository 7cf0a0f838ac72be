// The `.faultfs` control directory: hidden from listings yet reachable,
// renamable, writable only by its owner, refusing bad input all-or-nothing
// with a message; `faultfs ctl`; `-o rules=FILE` and `-o events=FILE`.
import FaultRules
import Foundation
import Glibc
import Testing

/// Runs `command` as nobody (65534:65534, no supplementary groups).
private func asNobody(_ command: [String]) throws -> CommandResult {
    try runCommand("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups"] + command, limitSeconds: 60)
}

/// A process that opens `control` for writing as root (the kernel's
/// permission check passes), then becomes `uid` and writes `line` to that
/// descriptor: only the daemon's own check can refuse it. Prints "written"
/// or the errno's name.
private func writeThroughRootDescriptor(_ control: String, asUser uid: Int, _ line: String) throws -> CommandResult {
    let program = """
        import errno, os, sys
        fd = os.open(sys.argv[1], os.O_WRONLY)
        uid = int(sys.argv[2])
        os.setgroups([]); os.setresgid(uid, uid, uid); os.setresuid(uid, uid, uid)
        assert os.getuid() == uid and os.geteuid() == uid
        try:
            os.write(fd, sys.argv[3].encode() + b"\\n")
            print("written")
        except OSError as e:
            print(errno.errorcode[e.errno])
        """
    return try runCommand("python3", ["-c", program, control, String(uid), line], limitSeconds: 60)
}

extension AllMountTests {
    @Suite(.serialized, .timeLimit(.minutes(5)))
    struct FaultControlFileTests {
        @Test(".faultfs is hidden from readdir and ls -a, but stat and open reach it")
        func hiddenButReachable() throws {
            try withMount(prepare: { try writeFile($0 + "/visible", "v") }) { fs in
                let (listed, entries) = listDirectory(fs.mountpoint)
                #expect(listed.ok)
                #expect(entries.map(\.name) == ["visible"], "readdir of the root: \(entries)")
                let ls = try runCommand("ls", ["-a", fs.mountpoint])
                #expect(ls.status == 0 && !ls.stdout.contains(".faultfs"), "\(ls)")
                #expect(ls.stdout.split(separator: "\n").sorted() == [".", "..", "visible"], "\(ls.stdout)")

                let (dirStat, dir) = statOf(fs.path(".faultfs"))
                #expect(dirStat.ok && FileSummary(dir).isDirectory, "stat .faultfs: \(dirStat)")
                for (name, mode) in [("control", mode_t(0o644)), ("stats", 0o444), ("events", 0o444)] {
                    let node = summary(fs.controlFile(name))
                    #expect(node?.type == S_IFREG && node?.permissions == mode, "stat .faultfs/\(name): \(String(describing: node))")
                }
                #expect(listDirectory(fs.path(".faultfs")).1.map(\.name) == ["control", "events", "stats", "status"])
                #expect(fs.controlText().hasPrefix("# faultfs rules"), "\(fs.controlText())")
                #expect(fs.stats()["writeback"] != nil, "stats lists every op: \(fs.stats().keys.sorted())")
                // Nothing of it exists in the backing directory, and it cannot be replaced.
                #expect(statOf(fs.backing(".faultfs")).0.errno == ENOENT)
                #expect(sys { mkdir(fs.path(".faultfs"), 0o755) }.errno == EEXIST)
                #expect(sys { unlink(fs.controlFile()) }.errno != 0)
                #expect(openFile(fs.path(".faultfs/new"), O_CREAT | O_WRONLY).errno != 0)
            }
        }

        @Test("-o control=.ctl renames the control directory")
        func renamedControlDirectory() throws {
            try withMount(options: ["control=.ctl"]) { fs in
                #expect(summary(fs.controlFile(directory: ".ctl"))?.type == S_IFREG)
                #expect(statOf(fs.path(".faultfs")).0.errno == ENOENT, ".faultfs is an ordinary (missing) name now")
                #expect(listDirectory(fs.mountpoint).1.isEmpty, "hidden from readdir: \(listDirectory(fs.mountpoint).1)")
                try fs.arm("fail fsync EIO id=viactl", directory: ".ctl")
                #expect(fs.ruleLines(directory: ".ctl") == ["fail fsync EIO id=viactl"])
                let ctl = try fs.faultfs(["ctl", "--control", ".ctl", fs.mountpoint, "fail flush EIO id=second"])
                #expect(ctl.status == 0, "\(ctl)")
                #expect(fs.ruleLines(directory: ".ctl") == ["fail fsync EIO id=viactl", "fail flush EIO id=second"])
                let fd = try openOrThrow(fs.path("f"), O_CREAT | O_WRONLY)
                #expect(sys { fsync(fd) }.errno == EIO, "the rule set through .ctl acts")
                #expect(sys { close(fd) }.errno == EIO)
            }
        }

        @Test("another user may read stats and events but gets EACCES writing control")
        func nonOwnerCannotWriteControl() throws {
            try withMount(options: ["allow_other", "nowriteback"]) { fs in
                try fs.arm("fail syncwrite EIO path=e.dat id=keep")
                let fd = try openOrThrow(fs.path("e.dat"), O_CREAT | O_WRONLY)
                #expect(writeBytes(fd, [1, 2, 3]).errno == EIO)  // one event
                close(fd)

                let echo = try asNobody(["sh", "-c", "echo clear > \(fs.controlFile())"])
                #expect(echo.status != 0, "\(echo)")
                #expect(echo.stderr.contains("Permission denied"), "\(echo.stderr)")
                #expect(fs.ruleLines() == ["fail syncwrite EIO id=keep path=e.dat"], "rules unchanged: \(fs.controlText())")

                let stats = try asNobody(["cat", fs.controlFile("stats")])
                #expect(stats.status == 0 && stats.stdout.contains("syncwrite"), "\(stats)")
                let events = try asNobody(["cat", fs.controlFile("events")])
                #expect(events.status == 0 && events.stdout.contains("\"path\":\"e.dat\""), "\(events)")
                let control = try asNobody(["cat", fs.controlFile()])
                #expect(control.status == 0 && control.stdout.contains("id=keep"), "\(control)")
                let ctl = try asNobody([try FaultFSBinary.path(), "ctl", fs.mountpoint, "clear"])
                #expect(ctl.status != 0 && ctl.stderr.contains("ermission denied"), "\(ctl)")
                #expect(ctl.stderr.contains("may write the control file") && !ctl.stderr.contains("faultfs mount?"),
                        "says what is wrong, not that it may be no faultfs mount: \(ctl.stderr)")
                #expect(fs.ruleLines() == ["fail syncwrite EIO id=keep path=e.dat"])
            }
        }

        // The security boundary itself: a descriptor opened by root and used by
        // another user. The kernel checks permissions only at open, so the
        // EACCES here can only come from the daemon's check of the writer's uid.
        @Test("a control descriptor opened by root, written by another user: the daemon refuses with EACCES")
        func nonOwnerWritingThroughRootsDescriptor() throws {
            try withMount(options: ["allow_other"]) { fs in
                try fs.arm("fail fsync EIO path=e.dat id=keep")
                let before = fs.controlText()

                let asNobody = try writeThroughRootDescriptor(fs.controlFile(), asUser: 65534, "clear")
                #expect(asNobody.status == 0 && asNobody.stdout == "EACCES\n", "nobody writing through root's descriptor: \(asNobody)")
                #expect(fs.ruleLines() == ["fail fsync EIO id=keep path=e.dat"], "rules unchanged: \(fs.controlText())")
                #expect(fs.controlText() == before, "nothing changed, no error line either")

                // The same program as root (the owner) gets through: the descriptor
                // path works, so the refusal above was the uid check.
                let asRoot = try writeThroughRootDescriptor(fs.controlFile(), asUser: 0, "clear keep")
                #expect(asRoot.status == 0 && asRoot.stdout == "written\n", "root: \(asRoot)")
                #expect(fs.ruleLines().isEmpty, "\(fs.controlText())")
            }
        }

        @Test("a bad line is refused with EINVAL, changes nothing, and control shows where it is wrong")
        func badControlInput() throws {
            try withMount { fs in
                try fs.arm("fail fsync EIO id=keep path=nothing")
                let before = fs.ruleLines()

                let refused = fs.control("fail wrtie EIO")
                #expect(refused.errno == EINVAL, "\(refused)")
                #expect(fs.ruleLines() == before)
                let text = fs.controlText()
                #expect(text.contains("# error: line 1, column 6: unknown operation \"wrtie\""), "\(text)")

                // The shell's echo sees the same error (bash names the errno;
                // dash's echo only says "I/O error" whatever the errno is).
                let echo = try runCommand("bash", ["-c", "echo 'fail wrtie EIO' > \(fs.controlFile())"])
                #expect(echo.status != 0 && echo.stderr.contains("Invalid argument"), "\(echo)")

                // All or nothing: two good lines and a bad third apply nothing.
                let three = fs.control("fail flush EIO id=x1\nfail fsync ENOSPC id=x2\nfail bogus EIO id=x3\n")
                #expect(three.errno == EINVAL, "\(three)")
                #expect(fs.ruleLines() == before, "nothing of the 3-line write applied: \(fs.controlText())")
                #expect(fs.controlText().contains("# error: line 3, column 6: unknown operation \"bogus\""), "\(fs.controlText())")

                // Refusals by the engine: an unknown id, a duplicate id.
                #expect(fs.control("clear nosuch").errno == EINVAL)
                #expect(fs.controlText().contains("no rule with id \"nosuch\""), "\(fs.controlText())")
                #expect(fs.control("fail flush EIO id=keep").errno == EINVAL)
                #expect(fs.controlText().contains("duplicate id \"keep\""), "\(fs.controlText())")
                #expect(fs.ruleLines() == before)

                // A good write applies and the error line goes away.
                try fs.arm("clear keep")
                #expect(fs.ruleLines().isEmpty)
                #expect(!fs.controlText().contains("# error"), "\(fs.controlText())")
            }
        }

        @Test("faultfs ctl: exit 1 with the message on stderr for a bad line; applies good ones; prints rules")
        func ctlCommand() throws {
            try withMount { fs in
                let bad = try fs.faultfs(["ctl", fs.mountpoint, "bogus"])
                #expect(bad.status == 1, "\(bad)")
                #expect(bad.stderr.contains("line 1, column 1") && bad.stderr.contains("unknown command \"bogus\""), "\(bad.stderr)")
                let mixed = try fs.faultfs(["ctl", fs.mountpoint, "fail fsync EIO", "delay flush -5ms"])
                #expect(mixed.status == 1 && mixed.stderr.contains("line 2"), "\(mixed)")
                #expect(fs.ruleLines().isEmpty)

                let good = try fs.faultfs(["ctl", fs.mountpoint, "fail writeback ENOSPC path=*.wal count=1", "delay write 200ms prob=0.1 seed=7"])
                #expect(good.status == 0 && good.stderr.isEmpty, "\(good)")
                #expect(fs.ruleLines() == ["fail writeback ENOSPC id=r1 path=*.wal count=1", "delay write 200ms id=r2 prob=0.1 seed=7"])
                let show = try fs.faultfs(["ctl", fs.mountpoint])
                #expect(show.status == 0 && show.stdout == fs.controlText(), "\(show)")
                let notMounted = try fs.faultfs(["ctl", fs.base, "clear"])
                #expect(notMounted.status != 0 && !notMounted.stderr.isEmpty, "\(notMounted)")
            }
        }

        @Test("-o rules=FILE: a good file arms its rules at mount; a bad file refuses to mount")
        func rulesFile() throws {
            try withTemporaryDirectory("rules") { dir in
                let good = dir + "/good.rules"
                try writeFile(good, "# startup faults\nfail fsync EIO path=*.db id=db\n\ncapacity 64M\n")
                try withMount(options: ["rules=\(good)"]) { fs in
                    #expect(fs.ruleLines() == ["fail fsync EIO id=db path=*.db"])
                    #expect(fs.controlText().contains("# capacity 67108864 bytes"))
                    let fd = try openOrThrow(fs.path("x.db"), O_CREAT | O_WRONLY)
                    #expect(sys { fsync(fd) }.errno == EIO)
                    close(fd)
                }

                let bad = dir + "/bad.rules"
                try writeFile(bad, "fail fsync EIO\nfail fsync EIO prob=2\n")
                let source = dir + "/src", mountpoint = dir + "/mnt"
                try check("mkdir", sys { mkdir(source, 0o755) })
                try check("mkdir", sys { mkdir(mountpoint, 0o755) })
                let result = try runCommand(try FaultFSBinary.path(), ["mount", "-o", "rules=\(bad)", source, mountpoint], limitSeconds: 60)
                if MountTable.hasFaultFSMount(mountpoint) {
                    _ = try? runCommand(try FaultFSBinary.path(), ["umount", mountpoint], limitSeconds: 60)
                }
                #expect(result.status != 0, "mount with a bad rules file: \(result)")
                #expect(result.stderr.contains(bad) && result.stderr.contains("line 2, column 21") && result.stderr.contains("bad prob"),
                        "\(result.stderr)")
                #expect(!MountTable.isMountPoint(mountpoint), "nothing mounted")

                let missing = try runCommand(try FaultFSBinary.path(), ["mount", "-o", "rules=\(dir)/none", source, mountpoint], limitSeconds: 60)
                if MountTable.hasFaultFSMount(mountpoint) {
                    _ = try? runCommand(try FaultFSBinary.path(), ["umount", mountpoint], limitSeconds: 60)
                }
                #expect(missing.status != 0 && missing.stderr.contains("\(dir)/none"), "\(missing)")
            }
        }

        @Test("-o events=FILE: every event is also appended to FILE")
        func eventsFile() throws {
            try withTemporaryDirectory("events") { dir in
                let log = dir + "/events.jsonl"
                try withMount(options: ["events=\(log)", "nowriteback"]) { fs in
                    try fs.arm("fail syncwrite EIO count=2")
                    let fd = try openOrThrow(fs.path("w"), O_CREAT | O_WRONLY)
                    for _ in 0..<3 { _ = writeBytes(fd, [7]) }
                    close(fd)
                    let inFile = textOfFile(log).split(separator: "\n").map(String.init)
                    let inMount = textOfFile(fs.controlFile("events")).split(separator: "\n").map(String.init)
                    #expect(inFile.count == 2 && inFile == inMount, "file: \(inFile), mount: \(inMount)")
                }
            }
        }
    }
}
