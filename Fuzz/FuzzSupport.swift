// Shared by the libFuzzer targets in this folder (see scripts/fuzz.sh, which compiles each target together
// with this file against HPS built with -sanitize=fuzzer,address).
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A directory of this process for the files a target writes (the readers under test take paths).
let fuzzScratch: String = {
    let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
    let dir = "\(base)/hps-fuzz-\(getpid())"
    mkdir(dir, 0o700)
    return dir
}()

/// Writes `bytes` to `path`, replacing it; traps when the file system fails (not a finding of the target).
func writeFile(_ path: String, _ bytes: UnsafeRawBufferPointer) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    precondition(fd >= 0, "cannot create \(path)")
    var done = 0
    while done < bytes.count {
        let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
        precondition(n > 0, "cannot write \(path)")
        done += n
    }
    close(fd)
}

func makeDirectory(_ path: String) { mkdir(path, 0o700) }
