#include "base/result.hpp"

namespace vireo {

const char* to_string(ErrorCode code) noexcept {
    switch (code) {
        case ErrorCode::InvalidArgument:
            return "invalid argument";
        case ErrorCode::NotFound:
            return "not found";
        case ErrorCode::PermissionDenied:
            return "permission denied";
        case ErrorCode::Unsupported:
            return "unsupported";
        case ErrorCode::AlreadyExists:
            return "already exists";
        case ErrorCode::OutOfRange:
            return "out of range";
        case ErrorCode::ResourceExhausted:
            return "resource exhausted";
        case ErrorCode::BadState:
            return "bad state";
        case ErrorCode::System:
            return "system error";
    }
    return "unknown";
}

}  // namespace vireo
