#include "base/private_dir.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "base/split.hpp"

namespace vireo {

namespace {

Result<void> check_component(const std::string& dir, bool last) {
    struct stat l {};
    if (::lstat(dir.c_str(), &l) != 0) return fail_errno(errno, "run directory: {}", dir);
    const uid_t me = ::geteuid();
    if (S_ISLNK(l.st_mode) && l.st_uid != 0 && l.st_uid != me)
        return fail(ErrorCode::PermissionDenied,
                    "run directory: {} is a symbolic link owned by uid {}, not by you (uid {}) or "
                    "root: refusing to follow it",
                    dir, l.st_uid, me);
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) return fail_errno(errno, "run directory: {}", dir);
    if (!S_ISDIR(st.st_mode))
        return fail(ErrorCode::InvalidArgument, "run directory: {} is not a directory", dir);
    const unsigned mode = st.st_mode & 07777;
    if (last) {
        if (st.st_uid != me)
            return fail(ErrorCode::PermissionDenied,
                        "run directory: {} belongs to uid {}, not to you (uid {}): refusing to "
                        "use it (remove it, or set run_dir)",
                        dir, st.st_uid, me);
        if ((mode & 022) != 0)
            return fail(ErrorCode::PermissionDenied,
                        "run directory: {} has mode {:04o}: others could replace its files "
                        "(chmod 700 {})",
                        dir, mode, dir);
        return ok();
    }
    if (st.st_uid != 0 && st.st_uid != me)
        return fail(ErrorCode::PermissionDenied,
                    "run directory: {} belongs to uid {}, not to you (uid {}) or root: refusing "
                    "to use a directory below it",
                    dir, st.st_uid, me);
    if ((mode & 022) != 0 && (mode & S_ISVTX) == 0)
        return fail(ErrorCode::PermissionDenied,
                    "run directory: {} has mode {:04o} (writable by others, not sticky): "
                    "refusing to use a directory below it",
                    dir, mode);
    return ok();
}

}  // namespace

Result<void> ensure_private_dir(const std::string& path) {
    if (path.empty() || path[0] != '/')
        return fail(ErrorCode::InvalidArgument, "run directory: \"{}\" is not an absolute path",
                    path);
    const auto parts = split(path, '/');
    std::string dir;
    size_t left = 0;
    for (const auto part : parts)
        left += part.empty() || part == "." ? 0u : 1u;
    if (left == 0) return fail(ErrorCode::InvalidArgument, "run directory: / is not one");
    VIREO_TRY(check_component("/", false));
    for (const auto part : parts) {
        if (part.empty() || part == ".") continue;
        if (part == "..")
            return fail(ErrorCode::InvalidArgument, "run directory: \"{}\" contains ..", path);
        dir += "/";
        dir += part;
        --left;
        if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
            return fail_errno(errno, "run directory: cannot create {}", dir);
        VIREO_TRY(check_component(dir, left == 0));
    }
    return ok();
}

}  // namespace vireo
