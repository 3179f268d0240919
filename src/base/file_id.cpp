#include "base/file_id.hpp"

#include <fcntl.h>
#include <unistd.h>

namespace vireo {

Result<UniqueFd> open_output(const std::string& path, std::span<const InputFile> inputs,
                             const char* what, bool append) {
    // No O_TRUNC here: whether the file may be emptied is decided once it is known which file
    // it is. O_NONBLOCK: a FIFO without a reader fails (ENXIO) instead of waiting.
    UniqueFd fd(::open(
        path.c_str(),
        O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (append ? O_APPEND : 0), 0600));
    if (!fd) {
        if (errno == ENXIO)
            return fail(ErrorCode::InvalidArgument, "{}: {} is a FIFO that nothing reads", what,
                        path);
        return fail_errno(errno, "{}: cannot open {}", what, path);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return fail_errno(errno, "{}: stat {}", what, path);
    if (const InputFile* in = find_input(inputs, st))
        return fail(ErrorCode::InvalidArgument,
                    "{}: {} is the {}, which vireo reads: refusing to write to it", what, path,
                    in->name);
    if (S_ISREG(st.st_mode)) {
        if (!append && ::ftruncate(fd.get(), 0) != 0)
            return fail_errno(errno, "{}: truncate {}", what, path);
    } else if (!S_ISCHR(st.st_mode) && !S_ISFIFO(st.st_mode)) {
        return fail(ErrorCode::InvalidArgument,
                    "{}: {} is not a regular file, character device or FIFO", what, path);
    }
    // Writes block as they would on a file opened normally (a terminal, a full FIFO).
    if (::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK) != 0)
        return fail_errno(errno, "{}: fcntl {}", what, path);
    return fd;
}

}  // namespace vireo
