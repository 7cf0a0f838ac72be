// Keep the README true: its first command (`mount-scripts/demo`, exactly as
// written) and every command of its "Use" block run and succeed, and the
// scripts' package installs wait for the dpkg lock.
import Foundation
import Glibc
import Testing

/// The repository root: this file is Tests/IntegrationTests/ReadmeTests.swift.
private let repositoryRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// faultfs mounts (mount point) and loop devices (device: backing file)
/// that a run could leave behind; others' test fixtures are left out.
private func leftoverCandidates() -> Set<String> {
    let mounts = MountTable.entries().filter { $0.type == "fuse.faultfs" && !$0.mountPoint.contains("faultfs-itest-") }
        .map { "mount \($0.mountPoint)" }
    let loops = ((try? runCommand("losetup", ["-a"], limitSeconds: 60))?.stdout ?? "")
        .split(separator: "\n").filter { $0.contains("faultfs-run.") || $0.contains("faultfs-demo") }.map { "loop \($0)" }
    return Set(mounts + loops)
}

/// The lines of the README's "## Use" code block.
private func useSectionCommands() throws -> [String] {
    let readme = try String(contentsOfFile: repositoryRoot + "/README.md", encoding: .utf8)
    guard let section = readme.range(of: "\n## Use\n"),
          let open = readme.range(of: "```\n", range: section.upperBound..<readme.endIndex),
          let close = readme.range(of: "\n```", range: open.upperBound..<readme.endIndex) else {
        throw SetupError("README.md has no code block under \"## Use\"")
    }
    return readme[open.upperBound..<close.lowerBound].split(separator: "\n").map(String.init)
}

/// A README line as a command: its trailing comment dropped, the example
/// paths replaced by directories under `base`.
private func runnable(_ line: String, base: String) -> String {
    var command = line.replacingOccurrences(of: #"\s+#\s.*$"#, with: "", options: .regularExpression)
    for (example, directory) in [("/srv/db", "db"), ("/srv/a", "a"), ("/srv/b", "b")] {
        command = command.replacingOccurrences(of: example, with: base + "/" + directory)
    }
    for (word, directory) in [("SRC", "src"), ("MNT", "mnt")] {
        command = command.replacingOccurrences(of: "\\b\(word)\\b", with: base + "/" + directory, options: .regularExpression)
    }
    return command.trimmingCharacters(in: .whitespaces)
}

extension AllMountTests {
    @Suite(.serialized)
    struct ReadmeTests {
        @Test("mount-scripts/demo, exactly as the README says, in a copy of the repository: exit 0, names its report, the writer met ENOSPC, was throttled in reclaim in phase 3, nothing left mounted")
        func demoAsWritten() throws {
            try MountedFS.requirePrerequisites()
            // `swift test` holds this package's build lock while tests run, and
            // the demo's `swift build -c release` would wait for it forever: so
            // the demo runs in a copy of the working tree (what a clean clone
            // with these changes holds), with its own build folder. Its run
            // folder (faultfs-demo-*) goes away with the copy.
            try withTemporaryDirectory("demo") { copy in
                let files = try runCommand("bash", ["-c", "cd \"$0\" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C \"$1\"",
                                                    repositoryRoot, copy], limitSeconds: 300)
                try #require(files.status == 0 && access(copy + "/mount-scripts/demo", X_OK) == 0, "copying the working tree: \(files)")
                // SwiftPM leaves lock files named after the build folder in
                // /tmp (e.g. _tmp_..._demo.X_.build.lock): remove the copy's.
                defer {
                    let prefix = copy.replacingOccurrences(of: "/", with: "_") + "_.build"
                    for name in (try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? [] where name.hasPrefix(prefix) {
                        unlink("/tmp/" + name)
                    }
                }
                let before = leftoverCandidates()
                let demo = try runCommand("bash", ["-c", "cd \"$0\" && mount-scripts/demo", copy], limitSeconds: 2400)
                #expect(demo.status == 0, "\(demo)")
                let output = demo.stdout + demo.stderr
                let report = output.split(separator: "\n").last { $0.hasPrefix("report: ") }.map { String($0.dropFirst("report: ".count)) }
                #expect(report.map { access($0, R_OK) == 0 && $0.hasSuffix("report.html") && $0.hasPrefix(copy + "/faultfs-demo-") } == true,
                        "names a report that exists, in a run folder of the current directory: \(String(describing: report))")
                let told = output.split(separator: "\n").first { $0.contains("fsync ->") && $0.contains("ENOSPC") }
                #expect(told != nil, "the writer's fsync got ENOSPC: \(output.suffix(3000))")
                if let report {
                    let summary = textOfFile(URL(fileURLWithPath: report).deletingLastPathComponent().path + "/summary.txt")
                    #expect(summary.contains("ENOSPC"), "\(summary)")
                    // Phase 3: the bdi limit lifted, a stall, the writer in a small cgroup: throttled in reclaim, not killed.
                    let phase3 = summary.split(separator: "\n").first { $0.hasPrefix("during 'stall writeback path=mem.dat' (") && $0.contains("writer: ") }
                    #expect(phase3?.contains("writer: throttled in reclaim for ") == true, "\(summary)")
                    #expect(summary.contains("cgroup memory: peak "), "\(summary)")
                    #expect(summary.contains("changed: max_ratio 1→100 at "), "\(summary)")
                }
                let left = leftoverCandidates().subtracting(before)
                #expect(left.isEmpty, "left behind: \(left.sorted())")
            }
        }

        @Test("every command of the README's Use block runs and succeeds, on temporary directories")
        func useSectionRuns() throws {
            try MountedFS.requirePrerequisites()
            let commands = try useSectionCommands().filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
            for word in ["faultfs mount", "mount -t", "echo", "cat", "tail -f", "faultfs ctl", "faultfs umount"] {
                #expect(commands.contains { $0.hasPrefix(word) }, "the Use block has a \(word) line")
            }
            try withTemporaryDirectory("readme") { base in
                for name in ["db", "a", "b", "src", "mnt", "bin"] { try check("mkdir", sys { mkdir(base + "/" + name, 0o755) }) }
                try writeFile(base + "/db/existing.txt", "there before the mount\n")
                // faultfs in PATH; mount(8) runs its helper with a default PATH,
                // so for `mount -t fuse.faultfs` a copy goes to /usr/local/bin
                // for the test (unless one is installed already).
                let binary = try FaultFSBinary.path()
                _ = try runCommand("cp", [binary, base + "/bin/faultfs"])
                let system = "/usr/local/bin/faultfs"
                let installedHere = access(system, F_OK) != 0
                if installedHere { _ = try runCommand("install", ["-m755", binary, system]) }
                var background: [BackgroundProgram] = []
                var foreground: BackgroundProgram?
                defer {
                    for program in background { program.stop() }
                    for name in ["db", "mnt", "b"] where MountTable.isMountPoint(base + "/" + name) {
                        _ = try? runCommand(binary, ["umount", "-l", base + "/" + name], limitSeconds: 60)
                    }
                    if installedHere { unlink(system) }
                }

                for line in commands {
                    let command = runnable(line, base: base)
                    let shell = "export PATH=\"\(base)/bin:$PATH\"; " + command
                    if command.hasPrefix("faultfs mount -f ") {
                        // The foreground mount serves until the README's umount of it.
                        let program = try BackgroundProgram("bash", ["-c", "export PATH=\"\(base)/bin:$PATH\"; exec " + command])
                        background.append(program)
                        foreground = program
                        let target = String(command.split(separator: " ").last!)
                        #expect(pollUntil(polls: 1000) { MountTable.hasFaultFSMount(target) }, "\(line): \(program.stderr)")
                    } else if command.hasPrefix("tail -f ") {
                        let program = try BackgroundProgram("bash", ["-c", shell])
                        background.append(program)
                        #expect(pollUntil(polls: 1000) { program.stdout.contains("\"action\":\"capacity\"") },
                                "\(line) shows the events so far: \(program.stdout) \(program.stderr)")
                        program.stop()  // it holds the file open: the umount below would be busy
                    } else {
                        let result = try runCommand("bash", ["-c", shell], limitSeconds: 60)
                        #expect(result.status == 0, "README line `\(line)` ran as `\(command)`: \(result)")
                        if command.hasPrefix("cat ") && command.hasSuffix("/control") {
                            #expect(result.stdout.contains("(kept by clear; 'capacity off' removes it)"), "\(result.stdout)")
                        }
                    }
                }
                #expect(textOfFile(base + "/db/existing.txt") == "there before the mount\n")
                for name in ["db", "mnt", "b"] {
                    #expect(!MountTable.isMountPoint(base + "/" + name), "the README unmounted \(name)")
                }
                // The foreground daemon ended with its unmount, and well.
                if let foreground {
                    #expect(pollUntil(polls: 1000) { !foreground.process.isRunning }, "the foreground daemon exited")
                    #expect(!foreground.process.isRunning && foreground.process.terminationStatus == 0, "\(foreground.stderr)")
                }
            }
        }

        @Test("apt_install (every install step of the scripts) waits for the dpkg lock and says so")
        func aptInstallWaitsForTheLock() throws {
            try withTemporaryDirectory("apt") { dir in
                // A stand-in apt-get that logs its arguments; its first
                // install fails, as it does before an `apt-get update`.
                try writeFile(dir + "/apt-get", """
                    #!/bin/sh
                    echo "$*" >> "\(dir)/calls"
                    case "$*" in *install*) [ -e "\(dir)/updated" ] || exit 100 ;; *update*) touch "\(dir)/updated" ;; esac
                    """, mode: 0o755)
                let result = try runCommand("bash", ["-c", "export PATH=\"$1:$PATH\"; source \"$0/mount-scripts/lib.sh\"; apt_install pkg-a pkg-b",
                                                     repositoryRoot, dir])
                #expect(result.status == 0, "\(result)")
                #expect(result.stderr.contains("waiting up to 300 s for the dpkg lock"), "says what it waits for: \(result.stderr)")
                let calls = textOfFile(dir + "/calls").split(separator: "\n").map(String.init)
                #expect(calls.count == 3, "install, update, install: \(calls)")
                #expect(calls.allSatisfy { $0.hasPrefix("-o DPkg::Lock::Timeout=300 ") }, "every call waits for the lock: \(calls)")
                #expect(calls.last?.hasSuffix("install -y -qq pkg-a pkg-b") == true, "\(calls)")
            }
        }
    }
}
