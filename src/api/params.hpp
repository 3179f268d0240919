// Typed access to a request's "params", each failure an ApiError("invalid-params") that names
// the key and what it must be.
#pragma once

#include <string>

#include "api/server.hpp"
#include "base/size.hpp"

namespace vireo::api {

inline const Json& required(const Json& params, const char* key) {
    if (!params.contains(key))
        throw ApiError("invalid-params", fmt::format("\"{}\" is required", key));
    return params[key];
}

/// A size: "256M" or a byte count.
inline uint64_t size_param(const Json& params, const char* key) {
    const Json& v = required(params, key);
    if (v.is_number_unsigned()) return v.get<uint64_t>();
    if (v.is_string()) {
        auto n = parse_size(v.get<std::string>());
        if (!n)
            throw ApiError("invalid-params", fmt::format("\"{}\": {}", key, n.error().message()));
        return *n;
    }
    throw ApiError("invalid-params",
                   fmt::format("\"{}\" must be a size (\"256M\") or a byte count", key));
}

/// A whole number from 0 to `max`.
inline uint64_t uint_param(const Json& params, const char* key, uint64_t max) {
    const Json& v = required(params, key);
    if (!v.is_number_unsigned() || v.get<uint64_t>() > max)
        throw ApiError("invalid-params",
                       fmt::format("\"{}\" must be a whole number from 0 to {}", key, max));
    return v.get<uint64_t>();
}

inline std::string string_param(const Json& params, const char* key) {
    const Json& v = required(params, key);
    if (!v.is_string())
        throw ApiError("invalid-params", fmt::format("\"{}\" must be a string", key));
    return v.get<std::string>();
}

}  // namespace vireo::api
