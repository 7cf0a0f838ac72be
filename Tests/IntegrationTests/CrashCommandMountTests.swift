// Power loss through a real mount: the crash command is refused where
// crash simulation is off, and `-o crashsim` shows in the status with its
// graveyard hidden. (The crash itself and the session restart are the server's: see its tests.)
import FaultRules
import Foundation
import Glibc
import Testing

extension AllMountTests {
    @Suite(.serialized, .timeLimit(.minutes(5)))
    struct CrashCommandMountTests {
        @Test("crash without -o crashsim: EINVAL, and control says how to enable it; a stale graveyard goes at mount")
        func crashRefusedWhenOff() throws {
            let stale: (String) throws -> Void = { source in
                _ = try check("mkdir", sys { mkdir(source + "/.faultfs-crashsim", 0o700) })
                try writeFile(source + "/.faultfs-crashsim/g1", "left by a daemon killed with -9")
            }
            try withMount(prepare: stale) { fs in
                var st = stat()
                #expect(lstat(fs.source + "/.faultfs-crashsim", &st) != 0, "the stale graveyard is still there")
                let refused = fs.control("crash")
                #expect(refused.errno == EINVAL, "\(refused)")
                let text = fs.controlText()
                #expect(text.contains("# error: line 1, column 1: crash: this mount has no crash simulation; mount it with -o crashsim"), "\(text)")
                let echo = try runCommand("bash", ["-c", "echo crash > \(fs.controlFile())"])
                #expect(echo.status != 0 && echo.stderr.contains("Invalid argument"), "\(echo)")
                #expect(textOfFile(fs.controlFile("status")).contains(#""crashsim":"off","crashes":0}"#))
            }
        }

        @Test("-o crashsim=journal: the status says so, the graveyard is hidden, unmount removes it")
        func crashsimMount() throws {
            var source = ""
            try withMount(options: ["crashsim=journal"]) { fs in
                source = fs.source
                #expect(textOfFile(fs.controlFile("status")).contains(#""crashsim":"journal","crashes":0}"#))
                var st = stat()
                #expect(lstat(fs.source + "/.faultfs-crashsim", &st) == 0)
                #expect(lstat(fs.mountpoint + "/.faultfs-crashsim", &st) != 0 && errno == ENOENT)
                let listed = try FileManager.default.contentsOfDirectory(atPath: fs.mountpoint)
                #expect(!listed.contains(".faultfs-crashsim"))
                #expect(mkdir(fs.mountpoint + "/.faultfs-crashsim", 0o755) != 0 && errno == EPERM)
                // A file removed through the mount is kept there until durable.
                #expect(FileManager.default.createFile(atPath: fs.mountpoint + "/f", contents: Data("x".utf8)))
                #expect(unlink(fs.mountpoint + "/f") == 0)
                #expect(((try? FileManager.default.contentsOfDirectory(atPath: fs.source + "/.faultfs-crashsim")) ?? []).count == 1)
                _ = fs.unmount()
                #expect(lstat(source + "/.faultfs-crashsim", &st) != 0, "the graveyard outlived the unmount")
            }
        }
    }
}
