// Which file an open file or path is (device and inode), so that vireo can tell that two names
// are the same file. Rule: vireo never opens for writing a file it also reads (issue 14:
// --console file:KERNEL emptied the kernel it had just mapped, --console file:DISK a disk).
#pragma once

#include <sys/stat.h>

#include <span>
#include <string>

#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace vireo {

struct FileId {
    dev_t dev = 0;
    ino_t ino = 0;
    bool operator==(const FileId&) const = default;
};

inline FileId file_id(const struct stat& st) noexcept {
    return {st.st_dev, st.st_ino};
}

/// A file vireo reads, as its identity and how errors name it ("kernel k.elf").
struct InputFile {
    FileId id;
    std::string name;
};

/// The input that `st` is (by device and inode), or nullptr: the one comparison behind "never
/// write a file vireo reads".
inline const InputFile* find_input(std::span<const InputFile> inputs,
                                   const struct stat& st) noexcept {
    for (const auto& in : inputs)
        if (in.id == file_id(st)) return &in;
    return nullptr;
}

/// Opens `path` to write vireo's output into it (a console log): created with mode 0600 if
/// it does not exist, truncated only after it was found not to be one of `inputs` (compared by
/// device and inode, so no other name for an input gets through: links, /proc/self/fd/N).
/// Regular files, character devices (a terminal, /dev/null) and FIFOs with a reader are
/// accepted; a FIFO without one is an error, not a wait. `what` names the option in errors.
/// With `append`, the file is kept and written at its end (O_APPEND) instead of emptied.
Result<UniqueFd> open_output(const std::string& path, std::span<const InputFile> inputs,
                             const char* what, bool append = false);

}  // namespace vireo
