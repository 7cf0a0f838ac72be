// The daemon never follows a symlink of the backing tree: the kernel
// resolves symlinks for the caller (which may lead out of the mount, as on
// any file system), but every operation the daemon performs on a symlink
// inode acts on the link itself.
import Glibc
import Testing

extension AllMountTests {
    @Suite(.timeLimit(.minutes(5)))
    struct SymlinkTests {
        @Test("a symlink to /etc in the source resolves on the caller's side")
        func symlinkOutOfTheSource() throws {
            try withMount(prepare: { source in try check("symlink", sys { symlink("/etc", source + "/esc") }) }) { fs in
                #expect(summary(fs.path("esc"))?.type == S_IFLNK)
                #expect(readlinkText(fs.path("esc")).1 == "/etc")
                let throughMount = try readFile(fs.path("esc/passwd")).get()
                #expect(throughMount == (try readFile("/etc/passwd").get()))
            }
        }

        @Test("lstat, readlink, lchown, utimensat(AT_SYMLINK_NOFOLLOW), unlink act on the link; O_NOFOLLOW gives ELOOP")
        func operationsOnTheLinkItself() throws {
            try withTemporaryDirectory("outside") { outside in
                try withMount(prepare: { source in
                    try writeFile(source + "/target", "target contents")
                    try check("symlink link", sys { symlink("target", source + "/link") })
                    try check("symlink out", sys { symlink(outside, source + "/out") })
                }) { fs in
                    let link = fs.path("link")
                    #expect(summary(link) == summary(fs.backing("link")))
                    #expect(summary(link)?.type == S_IFLNK && summary(link)?.size == 6)
                    #expect(readlinkText(link).1 == "target")

                    let chowned = sys { lchown(link, 1234, 1234) }
                    #expect(chowned.ok, "lchown: \(chowned)")
                    #expect(summary(fs.backing("link"))?.uid == 1234, "lchown did not change the link")
                    #expect(summary(fs.backing("target"))?.uid == 0, "lchown changed the target")

                    let targetBefore = statOf(fs.backing("target")).1.st_mtim.tv_sec
                    let touched = setTimes(link, atime: (800_000_000, 0), mtime: (800_000_000, 0), follow: false)
                    #expect(touched.ok, "utimensat AT_SYMLINK_NOFOLLOW: \(touched)")
                    #expect(statOf(fs.backing("link")).1.st_mtim.tv_sec == 800_000_000, "the link's mtime")
                    #expect(statOf(fs.backing("target")).1.st_mtim.tv_sec == targetBefore, "the target's mtime changed")

                    let opened = openFile(link, O_RDONLY | O_NOFOLLOW)
                    if opened.ok { close(Int32(opened.value)) }
                    #expect(opened.errno == ELOOP, "open(link, O_NOFOLLOW): \(opened)")

                    #expect(summary(fs.path("out"))?.type == S_IFLNK)
                    #expect(sys { unlink(fs.path("out")) }.ok)
                    #expect(summary(fs.backing("out")) == nil, "the link is still in the backing dir")
                    #expect(summary(outside)?.type == S_IFDIR, "unlink of the link removed its target")
                }
            }
        }

        @Test("a directory replaced by a symlink behind the mount's back: the daemon does not follow it")
        func directorySwappedForASymlink() throws {
            try withTemporaryDirectory("outside") { outside in
                try withMount(prepare: { source in
                    try check("mkdir sub", sys { mkdir(source + "/sub", 0o755) })
                    try writeFile(source + "/sub/old", "old")
                }) { fs in
                    // The kernel now knows "sub" (and keeps it: long entry timeout).
                    #expect(summary(fs.path("sub"))?.type == S_IFDIR)
                    try check("rename sub", sys { rename(fs.backing("sub"), fs.backing("sub.moved")) })
                    try check("symlink sub", sys { symlink(outside, fs.backing("sub")) })

                    // Whatever the kernel sends for these, the daemon must act on
                    // the inode it knows (the directory, now sub.moved), never
                    // through the new symlink.
                    let created = openFile(fs.path("sub/new"), O_CREAT | O_WRONLY, 0o644)
                    if created.ok { close(Int32(created.value)) }
                    #expect(created.ok, "create sub/new: \(created)")
                    let madeDirectory = sys { mkdir(fs.path("sub/newdir"), 0o755) }
                    #expect(madeDirectory.ok, "mkdir sub/newdir: \(madeDirectory)")
                    let madeLink = sys { symlink("x", fs.path("sub/newlink")) }
                    #expect(madeLink.ok, "symlink sub/newlink: \(madeLink)")
                    #expect(listDirectory(fs.backing("sub.moved")).1.map(\.name) == ["new", "newdir", "newlink", "old"],
                            "the known directory got them: \(listDirectory(fs.backing("sub.moved")).1)")
                    #expect(summary(fs.backing("sub"))?.type == S_IFLNK, "the symlink is untouched")
                    #expect(listDirectory(outside).1.isEmpty, "the daemon created \(listDirectory(outside).1) in the symlink's target")
                }
            }
        }
    }
}
