#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// An exclusive advisory lock held across a read-modify-rename update of a file, so two runs updating one file
/// take turns instead of one silently losing the other's work.
///
/// The lock is an `flock` on a companion file `.NAME.lock` beside the (symbolic-link-resolved) file, not on the
/// file itself: the update renames a new file over it, and HDF5 takes its own `flock` on the files it opens.
/// The companion file is empty and left in place (removing a lock file races with the next waiter).
package final class FileLock {
    private var fd: Int32
    /// The lock file.
    package let lockPath: String

    /// Blocks until the lock for updating `path` is held.
    /// - Throws: `OutputError` (naming `path`) if the lock file cannot be created or locked.
    package init(updating path: String) throws {
        let (dir, name) = AtomicOutput.split(AtomicOutput.followingSymlinks(path))
        lockPath = (dir == "/" ? "" : dir) + "/." + name + ".lock"
        fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw OutputError(path: path, "cannot create the lock file \(lockPath) (\(AtomicOutput.systemError()))")
        }
        var r: Int32
        repeat { r = flock(fd, LOCK_EX) } while r != 0 && errno == EINTR
        guard r == 0 else {
            let reason = AtomicOutput.systemError()
            close(fd)
            fd = -1
            throw OutputError(path: path, "cannot lock \(lockPath) (\(reason))")
        }
    }

    /// Releases the lock (also on deinit).
    package func unlock() {
        guard fd >= 0 else { return }
        close(fd)
        fd = -1
    }

    deinit { unlock() }
}
