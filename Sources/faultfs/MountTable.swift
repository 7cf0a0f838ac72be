// faultfs's view of the kernel's mount table (System's `MountTable`): to
// refuse a second mount on a faultfs mount and to find what `umount` undoes.
import System

extension MountEntry {
    /// Our mounts: libfuse names them "fuse." + subtype.
    var isFaultFS: Bool { fileSystemType == "fuse.faultfs" }
}

extension MountTable {
    /// The faultfs mount whose mount point is `path` (an absolute,
    /// canonical path), the topmost if several are stacked.
    static func faultFSMount(at path: String, in entries: [MountEntry] = current()) -> MountEntry? {
        entries.last { $0.mountPoint == path && $0.isFaultFS }
    }
}
