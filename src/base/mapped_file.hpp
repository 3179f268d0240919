// A file mapped read-only (for kernel and initrd images): no copy into the VMM's heap.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "base/result.hpp"

namespace vireo {

class MappedFile {
  public:
    /// Maps `path` read-only. `what` names the file in errors ("kernel", "initrd").
    static Result<MappedFile> open(const std::string& path, const char* what);

    MappedFile(MappedFile&& o) noexcept;
    MappedFile& operator=(MappedFile&& o) noexcept;
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    ~MappedFile();

    std::span<const uint8_t> bytes() const noexcept { return {data_, size_}; }
    const std::string& path() const noexcept { return path_; }

  private:
    MappedFile() = default;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
    std::string path_;
};

}  // namespace vireo
