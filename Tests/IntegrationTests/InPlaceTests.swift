// SOURCE == MOUNTPOINT: the mount hides the directory, yet serves the files
// that were in it, and changes land in them.
import Glibc
import Testing

extension AllMountTests {
    @Suite(.timeLimit(.minutes(5)))
    struct InPlaceTests {
        /// A small tree: text, binary, empty and private files, nesting, a symlink.
        static func fill(_ root: String) throws {
            try writeFile(root + "/a.txt", "alpha\n")
            try writeFile(root + "/empty", [])
            try writeFile(root + "/private", "secret", mode: 0o600)
            for directory in ["n", "n/m", "n/m/o"] { try check("mkdir \(directory)", sys { mkdir(root + "/" + directory, 0o755) }) }
            try writeFile(root + "/n/m/o/deep.bin", pattern(file: 12, offset: 0, count: 100_000))
            try writeFile(root + "/n/side", "side")
            try check("symlink", sys { symlink("n/m", root + "/link") })
        }

        @Test("mounting a directory on itself keeps its files; changes land in it")
        func inPlaceMount() throws {
            var before: [String: NodeSnapshot] = [:]
            try withMount(inPlace: true, prepare: { source in
                try Self.fill(source)
                before = try snapshotTree(source)
            }) { fs in
                #expect(fs.mountpoint == fs.source && MountTable.hasFaultFSMount(fs.mountpoint))
                let throughMount = try snapshotTree(fs.mountpoint)
                #expect(throughMount.count == before.count, "\(throughMount.keys.sorted()) vs \(before.keys.sorted())")
                for line in differences(throughMount, before, names: ("through the mount", "before mounting")) { Issue.record("\(line)") }
                #expect((try readFile(fs.path("link/o/deep.bin")).get()) == pattern(file: 12, offset: 0, count: 100_000))

                try writeFile(fs.path("n/side"), "changed through the mount")
                #expect(fs.unmount().isEmpty)
                #expect(!MountTable.hasFaultFSMount(fs.source))
                let after = try snapshotTree(fs.source)
                #expect(after["n/side"]?.content == Array("changed through the mount".utf8))
                var expected = before
                expected["n/side"] = after["n/side"]
                for line in differences(after, expected, names: ("after unmounting", "expected")) { Issue.record("\(line)") }
            }
        }
    }
}
