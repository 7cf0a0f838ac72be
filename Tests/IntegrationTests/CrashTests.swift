// Power loss for real (issue 12, CRASH.md): `faultfs crash` on a mount with
// -o crashsim. What was durable survives, what was not is gone, the daemon
// (same pid) serves a new mount at the same path at once, and a process
// still holding a file of the old mount gets an error, never stale data.
// Block mode: ext4 on a crashed disk replays its journal.
import Foundation
import Glibc
import System
import Testing

private let pageCount = 4
private func pattern(_ byte: UInt8, pages: Int = pageCount) -> [UInt8] { [UInt8](repeating: byte, count: pages * 4096) }

extension MountedFS {
    /// `faultfs crash MNT ARGS...`.
    func crash(_ arguments: String...) throws -> CommandResult {
        try faultfs(["crash", mountpoint] + arguments)
    }

    /// The status file as JSON.
    func statusObject() throws -> [String: Any] {
        let text = textOfFile(controlFile("status"))
        return try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "status: \(text)")
    }

    /// The mounts at the mount point (one, unless something stacked).
    var mountsHere: [MountEntry] { MountTable.entries().filter { $0.mountPoint == mountpoint } }
}

/// fsync of a directory (the name operations in it become durable, posix model).
private func syncDirectory(_ path: String) throws {
    let fd = try openOrThrow(path, O_RDONLY | O_DIRECTORY)
    defer { close(fd) }
    _ = try check("fsync \(path)", sys { fsync(fd) })
}

extension AllMountTests {
    @Suite(.serialized, .timeLimit(.minutes(5)))
    struct CrashTests {
        @Test("fsync'd bytes survive; dirty and unsynced bytes, sizes and an unsynced create are undone; same daemon, new mount, at once")
        func durableSurvivesTheRestIsGone() throws {
            try withMount(options: ["crashsim"], prepare: { source in
                try writeFile(source + "/kept", pattern(0x11))
                try writeFile(source + "/grown", pattern(0x22, pages: 1))
            }) { fs in
                let before = try fs.statusObject()
                #expect(before["crashsim"] as? String == "posix", "\(before)")
                try fs.arm("fail fsync EIO path=nothing id=stays")
                let deviceBefore = try #require(fs.mountsHere.last?.device)

                // Durable: written, fsync'd, its name fsync'd in the root.
                let durable = try openOrThrow(fs.path("durable"), O_RDWR | O_CREAT)
                #expect(writeBytes(durable, pattern(0x33)).ok)
                _ = try check("fsync", sys { fsync(durable) })
                close(durable)
                try syncDirectory(fs.mountpoint)
                // Overwritten and closed (the daemon got the bytes), never fsync'd.
                let kept = try openOrThrow(fs.path("kept"), O_RDWR)
                #expect(pwriteBytes(kept, pattern(0x44, pages: 2), at: 4096).ok)
                close(kept)
                // Grown and still open: the new pages are dirty in the page cache.
                let grown = try openOrThrow(fs.path("grown"), O_RDWR)
                #expect(pwriteBytes(grown, pattern(0x55, pages: 8), at: 0).ok)
                // Created, written, closed: neither it nor its name was fsync'd.
                try writeFile(fs.path("fresh"), pattern(0x66))

                let result = try fs.crash()
                #expect(result.status == 0, "\(result); log: \(fs.log.suffix(3000))")
                #expect(result.stdout.contains("crashed"), "\(result)")

                // At once: the CLI returned after the mount answered again.
                let after = try fs.statusObject()
                #expect(after["pid"] as? Int == Int(fs.pid), "the same daemon serves: \(after)")
                #expect(after["crashes"] as? Int == 1, "\(after)")
                #expect(after["last_crash"] is [String: Any], "\(after)")
                #expect(fs.ruleLines().contains { $0.contains("id=stays") }, "rules stay armed: \(fs.controlText())")
                #expect(fs.mountsHere.count == 1, "one mount, none stacked: \(fs.mountsHere)")
                #expect(fs.mountsHere.last?.device != deviceBefore, "a new FUSE connection")

                #expect(try readFile(fs.path("durable")).get() == pattern(0x33))
                #expect(try readFile(fs.path("kept")).get() == pattern(0x11), "unsynced overwrite undone")
                #expect(try readFile(fs.path("grown")).get() == pattern(0x22, pages: 1), "dirty pages never stored, size back")
                #expect(try backingBytes(fs, "grown") == pattern(0x22, pages: 1))
                #expect(access(fs.path("fresh"), F_OK) != 0 && access(fs.backing("fresh"), F_OK) != 0,
                        "a create whose directory was never fsync'd is gone")

                // The fd of the old mount: an error, not the discarded pages.
                let (read, bytes) = preadBytes(grown, count: 4096, at: 0)
                #expect(!read.ok && (read.errno == ENOTCONN || read.errno == EIO || read.errno == ECONNABORTED),
                        "read of a dead mount's cached page: \(read) \(bytes.prefix(4))")
                let stat = sys { () -> Int32 in var st = Glibc.stat(); return fstat(grown, &st) }
                #expect(!stat.ok, "fstat on the dead mount: \(stat)")
                close(grown)
            }
        }

        @Test("a process with a shared mapping of the crashed mount gets SIGBUS, not the discarded pages")
        func mappingGetsSigbus() throws {
            try withMount(options: ["crashsim"], prepare: { try writeFile($0 + "/mapped", pattern(0x11, pages: 1)) }) { fs in
                // Maps, dirties the page, crashes the mount, touches the page again.
                let script = """
                    import mmap, os, sys, time
                    fd = os.open(sys.argv[1] + "/mapped", os.O_RDWR)
                    m = mmap.mmap(fd, 4096)
                    m[0:4] = b"DIRT"
                    with open(sys.argv[1] + "/.faultfs/control", "w") as c:
                        c.write("crash\\n")
                    for _ in range(100):
                        time.sleep(0.1)
                        if '"crashes":1' in open(sys.argv[1] + "/.faultfs/status").read(): break
                    print(m[0:4])
                    """
                let result = try runCommand("python3", ["-c", script, fs.mountpoint], limitSeconds: 60)
                #expect(result.status == 128 + SIGBUS, "killed by SIGBUS on the dead mapping: \(result)")
                #expect(try readFile(fs.path("mapped")).get() == pattern(0x11, pages: 1), "the dirty mapped page was discarded")
            }
        }

        @Test("a crash twice with the same torn seed keeps the same sectors")
        func tornIsReproducible() throws {
            try withMount(options: ["crashsim"], prepare: { try writeFile($0 + "/torn", pattern(0x00, pages: 16)) }) { fs in
                var outcomes: [[UInt8]] = []
                for _ in 0..<2 {
                    let fd = try openOrThrow(fs.path("torn"), O_RDWR)
                    #expect(pwriteBytes(fd, pattern(0x00, pages: 16), at: 0).ok)
                    _ = try check("fsync", sys { fsync(fd) })
                    #expect(pwriteBytes(fd, pattern(0x77, pages: 16), at: 0).ok)
                    close(fd)  // the daemon has the bytes; nothing fsync'd them
                    let result = try fs.crash("--torn", "--seed", "7", "--sector", "512")
                    #expect(result.status == 0, "\(result)")
                    outcomes.append(try readFile(fs.path("torn")).get())
                }
                #expect(outcomes[0] == outcomes[1], "same seed, same history: same bytes")
                let kept = outcomes[0].filter { $0 == 0x77 }.count
                #expect(kept > 0 && kept < 16 * 4096, "seed 7 keeps some sectors and loses others (kept \(kept) bytes)")
            }
        }

        @Test("--kill SIGKILLs a process holding the mount; the crash goes on")
        func killHolder() throws {
            try withMount(options: ["crashsim"]) { fs in
                let holder = Process()
                holder.executableURL = URL(fileURLWithPath: try resolveExecutable("sleep"))
                holder.arguments = ["600"]
                holder.currentDirectoryURL = URL(fileURLWithPath: fs.mountpoint)
                try holder.run()
                defer { if holder.isRunning { kill(holder.processIdentifier, SIGKILL) } }
                let result = try fs.crash("--kill")
                #expect(result.status == 0, "\(result)")
                holder.waitUntilExit()
                #expect(holder.terminationReason == .uncaughtSignal && holder.terminationStatus == SIGKILL)
                #expect(try fs.statusObject()["crashes"] as? Int == 1)
            }
        }

        @Test("crash is refused without -o crashsim (saying how) and on a path that is no faultfs mount")
        func refusals() throws {
            try withMount { fs in
                let result = try fs.crash()
                #expect(result.status == 1, "\(result)")
                #expect(result.stderr.contains("-o crashsim"), "\(result)")
                let plain = try fs.faultfs(["crash", fs.source])
                #expect(plain.status == 1 && plain.stderr.contains("is not a faultfs mount"), "\(plain)")
                let usage = try fs.faultfs(["crash", fs.mountpoint, "--sector", "512"])
                #expect(usage.status == 64 && usage.stderr.contains("--sector needs --torn"), "a usage error (ArgumentParser's EX_USAGE): \(usage)")
            }
        }

        @Test("`echo crash > control` from a shell succeeds (the abort waits for the writer's close), and a second crash meanwhile is refused with EBUSY")
        func crashFromTheShell() throws {
            try withMount(options: ["crashsim"]) { fs in
                for round in 1...3 {
                    // The second write comes while the first crash waits for its writer's close: EBUSY.
                    let script = """
                        exec 3>"$1/.faultfs/control"
                        echo crash >&3 || exit 10
                        echo crash >&3 2>/dev/null && exit 11
                        exec 3>&-
                        """
                    let result = try runCommand("sh", ["-c", script, "sh", fs.mountpoint], limitSeconds: 60)
                    #expect(result.status == 0, "round \(round): the first write succeeds, the second is refused: \(result)")
                    var crashes = 0
                    for _ in 0..<100 {
                        crashes = (try? fs.statusObject()["crashes"] as? Int) ?? 0
                        if crashes == round { break }
                        usleep(100_000)
                    }
                    #expect(crashes == round, "status counts the crash")
                    #expect(fs.mountsHere.count == 1)
                }
                #expect(textOfFile(fs.controlFile("control")).contains("# faultfs rules"), "the mount answers")
            }
        }

        @Test("a stop signal after a crash unmounts cleanly")
        func stopSignalAfterCrash() throws {
            let fs = try MountedFS(options: ["crashsim"])
            #expect(try fs.crash().status == 0)
            kill(fs.pid, SIGTERM)
            for _ in 0..<100 where fs.isRunning { usleep(100_000) }
            #expect(!fs.isRunning && fs.mountsHere.isEmpty, "daemon gone, nothing mounted: \(fs.mountsHere); log: \(fs.log.suffix(2000))")
            #expect(fs.unmount().isEmpty)
            removeTree(fs.base)
        }

        @Test("after crashes the mount unmounts cleanly: no stacked mount, no graveyard, daemon gone")
        func nothingLeaks() throws {
            let fs = try MountedFS(options: ["crashsim"])
            try writeFile(fs.path("a"), "a")
            #expect(try fs.crash().status == 0)
            let json = try fs.crash("--json")
            #expect(json.status == 0, "\(json)")
            let report = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
            #expect(report?["files_reverted"] is Int && report?["names_undone"] is Int, "--json prints the report: \(json.stdout)")
            #expect(fs.mountsHere.count == 1)
            #expect(fs.unmount().isEmpty)
            #expect(fs.mountsHere.isEmpty)
            #expect(access(fs.backing(".faultfs-crashsim"), F_OK) != 0, "graveyard removed at unmount")
            removeTree(fs.base)
        }
    
        @Test("block mode, ext4: an fsync'd file survives a crash of the disk, an unsynced one does not; ext4 mounts again; no loop device leaks")
        func blockModeExt4() throws {
            try MountedFS.requirePrerequisites()
            let binary = try FaultFSBinary.path()
            try withTemporaryDirectory("crashblock") { target in
                let mounted = try runCommand(binary, ["mount", "--fs", "ext4", "--size", "64M", "-o", "crashsim", target], limitSeconds: 120)
                try #require(mounted.status == 0, "\(mounted)")
                var unmounted = false
                defer { if !unmounted { _ = try? runCommand(binary, ["umount", target], limitSeconds: 120) } }

                let synced = try openOrThrow(target + "/synced", O_RDWR | O_CREAT)
                #expect(writeBytes(synced, pattern(0x5a, pages: 16)).ok)
                _ = try check("fsync", sys { fsync(synced) })
                close(synced)
                try syncDirectory(target)
                try writeFile(target + "/unsynced", pattern(0xa5, pages: 16))  // in ext4's page cache only
                let held = try openOrThrow(target + "/held", O_RDWR | O_CREAT)
                #expect(writeBytes(held, pattern(0x3c)).ok)

                let result = try runCommand(binary, ["crash", target], limitSeconds: 120)
                #expect(result.status == 0, "\(result)")
                let (heldRead, _) = preadBytes(held, count: 4096, at: 0)
                #expect(heldRead.errno == EIO, "the old ext4 is shut down: EIO, not its cached pages (\(heldRead))")
                close(held)
                let top = MountTable.entries().last { $0.mountPoint == target }
                #expect(top?.type == "ext4", "ext4 mounted again (mount ids and loop devices are reused): \(String(describing: top))")
                #expect(MountTable.entries().filter { $0.mountPoint == target }.count == 1, "the old mount is gone")
                #expect(try readFile(target + "/synced").get() == pattern(0x5a, pages: 16))
                let lost = (try? readFile(target + "/unsynced").get()) ?? []
                #expect(!containsBytes(lost, [0xa5, 0xa5, 0xa5, 0xa5]), "the unsynced bytes never reached the disk (\(lost.count) bytes there)")
                let after = try openOrThrow(target + "/after", O_WRONLY | O_CREAT)
                #expect(writeBytes(after, [1]).ok, "the file system takes writes")
                close(after)

                let umount = try runCommand(binary, ["umount", target], limitSeconds: 120)
                #expect(umount.status == 0, "\(umount)")
                unmounted = umount.status == 0
                let loops = try runCommand("losetup", ["-a"]).stdout
                let name = String(target.split(separator: "/").last ?? "")
                #expect(!loops.split(separator: "\n").contains { $0.contains("/var/lib/faultfs/block/") && $0.contains(name) },
                        "no loop device left: \(loops)")
            }
        }
    }
}
