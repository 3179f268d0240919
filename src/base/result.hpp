// vireo's one error convention: every fallible call returns Result<T>.
//
// Result<T> follows std::expected's API (has_value, value, error, operator*, ->), but is a small
// in-house type because std::expected does not build with clang 14, which we need for libFuzzer
// and the sanitizers. Errors carry a category (ErrorCode), the errno if a syscall failed, and a
// message a user can act on: what failed, where, and why.
#pragma once

#include <fmt/core.h>

#include <cassert>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace vireo {

/// Broad category of an error, for callers that branch on it (tests, the CLI's exit status).
enum class ErrorCode {
    InvalidArgument,    ///< the caller passed something that can never work
    NotFound,           ///< a file, device or object does not exist
    PermissionDenied,   ///< access refused by the host
    Unsupported,        ///< the host (kernel, KVM, CPU) lacks a needed feature
    AlreadyExists,      ///< overlaps or duplicates something present
    OutOfRange,         ///< an address, size or index is outside what is allowed
    ResourceExhausted,  ///< a limit is reached (slots, vCPUs, memory)
    BadState,           ///< the object is not in a state that allows the call
    System,             ///< a host syscall failed unexpectedly (see errno)
};

/// Short lower-case name of an ErrorCode ("invalid argument", ...).
const char* to_string(ErrorCode code) noexcept;

/// An error: category, errno (0 if none) and a human-readable message.
class Error {
  public:
    Error(ErrorCode code, std::string message, int sys_errno = 0)
        : code_(code), errno_(sys_errno), message_(std::move(message)) {}

    ErrorCode code() const noexcept { return code_; }
    int sys_errno() const noexcept { return errno_; }
    const std::string& message() const noexcept { return message_; }

    /// Prefixes the message with context: "context: message".
    Error& context(std::string_view what) {
        message_ = fmt::format("{}: {}", what, message_);
        return *this;
    }

  private:
    ErrorCode code_;
    int errno_;
    std::string message_;
};

/// Wraps an Error to construct a failed Result (like std::unexpected).
struct Unexpected {
    Error error;
};

/// Builds a failed result from a category and a formatted message.
template <typename... Args>
[[nodiscard]] Unexpected fail(ErrorCode code, fmt::format_string<Args...> format, Args&&... args) {
    return Unexpected{Error(code, fmt::format(format, std::forward<Args>(args)...))};
}

/// Builds a failed result for a syscall that set errno; the message ends with strerror(err).
template <typename... Args>
[[nodiscard]] Unexpected fail_errno(int err, fmt::format_string<Args...> format, Args&&... args) {
    ErrorCode code = ErrorCode::System;
    switch (err) {
        case ENOENT:
        case ENODEV:
        case ENXIO:
            code = ErrorCode::NotFound;
            break;
        case EACCES:
        case EPERM:
            code = ErrorCode::PermissionDenied;
            break;
        case EINVAL:
            code = ErrorCode::InvalidArgument;
            break;
        case EEXIST:
            code = ErrorCode::AlreadyExists;
            break;
        case ENOMEM:
        case ENOSPC:
        case EMFILE:
        case ENFILE:
            code = ErrorCode::ResourceExhausted;
            break;
        case ENOTTY:
        case EOPNOTSUPP:
            code = ErrorCode::Unsupported;
            break;
        default:
            break;
    }
    return Unexpected{Error(
        code,
        fmt::format("{}: {}", fmt::format(format, std::forward<Args>(args)...), strerror(err)),
        err)};
}

/// Value-or-error. [[nodiscard]]: ignoring a Result is a bug.
template <typename T>
class [[nodiscard]] Result {
  public:
    using value_type = T;

    template <typename U = T,
              typename = std::enable_if_t<std::is_constructible_v<T, U&&> &&
                                          !std::is_same_v<std::decay_t<U>, Result> &&
                                          !std::is_same_v<std::decay_t<U>, Unexpected>>>
    Result(U&& value) : storage_(std::in_place_index<0>, std::forward<U>(value)) {}
    Result(Unexpected u) : storage_(std::in_place_index<1>, std::move(u.error)) {}
    Result(Error e) : storage_(std::in_place_index<1>, std::move(e)) {}

    bool has_value() const noexcept { return storage_.index() == 0; }
    explicit operator bool() const noexcept { return has_value(); }

    T& value() & {
        assert(has_value());
        return std::get<0>(storage_);
    }
    const T& value() const& {
        assert(has_value());
        return std::get<0>(storage_);
    }
    T&& value() && {
        assert(has_value());
        return std::get<0>(std::move(storage_));
    }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T&& operator*() && { return std::move(*this).value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    Error& error() & {
        assert(!has_value());
        return std::get<1>(storage_);
    }
    const Error& error() const& {
        assert(!has_value());
        return std::get<1>(storage_);
    }
    Error&& error() && {
        assert(!has_value());
        return std::get<1>(std::move(storage_));
    }

    template <typename U>
    T value_or(U&& fallback) const& {
        return has_value() ? value() : static_cast<T>(std::forward<U>(fallback));
    }

  private:
    std::variant<T, Error> storage_;
};

/// Result of an operation that returns nothing on success.
template <>
class [[nodiscard]] Result<void> {
  public:
    using value_type = void;

    Result() = default;
    Result(Unexpected u) : error_(std::move(u.error)), failed_(true) {}
    Result(Error e) : error_(std::move(e)), failed_(true) {}

    bool has_value() const noexcept { return !failed_; }
    explicit operator bool() const noexcept { return has_value(); }
    void value() const { assert(has_value()); }

    Error& error() & {
        assert(failed_);
        return error_;
    }
    const Error& error() const& {
        assert(failed_);
        return error_;
    }
    Error&& error() && {
        assert(failed_);
        return std::move(error_);
    }

  private:
    Error error_{ErrorCode::System, {}};
    bool failed_ = false;
};

/// Success value for Result<void>.
inline Result<void> ok() {
    return {};
}

}  // namespace vireo

#define VIREO_CONCAT_INNER(a, b) a##b
#define VIREO_CONCAT(a, b) VIREO_CONCAT_INNER(a, b)

/// Evaluates `expr` (a Result<void>); on error returns the error from the enclosing function.
#define VIREO_TRY(expr) VIREO_TRY_IMPL(VIREO_CONCAT(vireo_try_result_, __COUNTER__), expr)
#define VIREO_TRY_IMPL(tmp, expr)                                     \
    do {                                                              \
        auto tmp = (expr);                                            \
        if (!tmp) return ::vireo::Unexpected{std::move(tmp).error()}; \
    } while (0)

/// `VIREO_TRY_ASSIGN(auto x, make_x());` declares x from a Result<T>, or returns its error.
#define VIREO_TRY_ASSIGN(lhs, expr) \
    VIREO_TRY_ASSIGN_IMPL(VIREO_CONCAT(vireo_try_, __COUNTER__), lhs, expr)
#define VIREO_TRY_ASSIGN_IMPL(tmp, lhs, expr)                     \
    auto tmp = (expr);                                            \
    if (!tmp) return ::vireo::Unexpected{std::move(tmp).error()}; \
    lhs = std::move(*tmp)
