// `.faultfs/status`: the daemon publishes itself (version, commit, pid, mount, options,
// armed rules, capacity) as one JSON line that `json.loads` reads.
import Foundation
import Glibc
import Testing

extension AllMountTests {
    @Suite(.serialized, .timeLimit(.minutes(5)))
    struct FaultStatusTests {
        private func status(_ fs: MountedFS) throws -> [String: Any] {
            let text = textOfFile(fs.controlFile("status"))
            #expect(text.hasSuffix("}\n") && !text.dropLast().contains("\n"), "one line: \(text)")
            return try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "\(text)")
        }

        @Test("status names the daemon's pid, the mount and its options, the armed rules and the capacity")
        func statusOfARealMount() throws {
            try withMount(options: ["nowriteback"], prepare: { try writeFile($0 + "/data", String(repeating: "x", count: 5000)) }) { fs in
                let first = try status(fs)
                #expect(first["pid"] as? Int == Int(fs.pid), "\(first)")
                #expect(first["mountpoint"] as? String == canonical(fs.mountpoint))
                #expect(first["source"] as? String == canonical(fs.source))
                #expect(first["options"] as? [String] == ["nowriteback"])
                #expect(first["writeback_cache"] as? Bool == false)
                #expect(first["armed_rules"] as? Int == 0)
                #expect((first["capacity"] as? [String: Any])?["state"] as? String == "off")
                #expect(summary(fs.controlFile("status"))?.permissions == 0o444)
                // The build's version and commit, as `faultfs --version` prints them.
                let shown = try runCommand(try FaultFSBinary.path(), ["--version"]).stdout
                let version = first["version"] as? String ?? "?", commit = first["commit"] as? String ?? "?"
                #expect(shown == "faultfs \(version) (commit \(commit))\n", "\(first)")
                #expect(version != "dev" && commit.count >= 40, "\(first)")

                try fs.arm("fail read EIO path=nothing", "capacity 1M")
                let armed = try status(fs)
                #expect(armed["armed_rules"] as? Int == 1)
                let capacity = armed["capacity"] as? [String: Any]
                #expect(capacity?["state"] as? String == "ready", "a small tree is measured before the command returns: \(armed)")
                #expect(capacity?["limit"] as? Int == 1 << 20)
                #expect(capacity?["used"] as? Int == 5000)

                try fs.arm("capacity off")
                #expect((try status(fs)["capacity"] as? [String: Any])?["state"] as? String == "off")
            }
        }

        @Test("python's json.loads reads status, as other readers (umount, bench, campaigns) will")
        func pythonReadsStatus() throws {
            try withMount { fs in
                let read = try runCommand("python3", ["-c", "import json,sys; s=json.load(open(sys.argv[1])); print(s['pid'], s['capacity']['state'])",
                                                      fs.controlFile("status")], limitSeconds: 60)
                #expect(read.status == 0 && read.stdout == "\(fs.pid) off\n", "\(read)")
            }
        }
    }
}

private func canonical(_ path: String) -> String {
    guard let resolved = realpath(path, nil) else { return path }
    defer { free(resolved) }
    return String(cString: resolved)
}
