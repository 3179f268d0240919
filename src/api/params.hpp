// Typed access to a request's "params": each failure an InvalidArgument error (the API's
// "invalid-params") that names the key and what it must be.
#pragma once

#include <string>

#include "api/server.hpp"
#include "base/size.hpp"

namespace vireo::api {

inline Result<const Json*> required(const Json& params, const char* key) {
    const auto it = params.find(key);
    if (it == params.end()) return fail(ErrorCode::InvalidArgument, "\"{}\" is required", key);
    return &*it;
}

/// A size: "256M" or a byte count.
inline Result<uint64_t> size_param(const Json& params, const char* key) {
    VIREO_TRY_ASSIGN(const Json* v, required(params, key));
    if (v->is_number_unsigned()) return v->get<uint64_t>();
    if (v->is_string()) {
        auto n = parse_size(v->get<std::string>());
        if (!n) return fail(ErrorCode::InvalidArgument, "\"{}\": {}", key, n.error().message());
        return *n;
    }
    return fail(ErrorCode::InvalidArgument, "\"{}\" must be a size (\"256M\") or a byte count",
                key);
}

/// A whole number from 0 to `max`.
inline Result<uint64_t> uint_param(const Json& params, const char* key, uint64_t max) {
    VIREO_TRY_ASSIGN(const Json* v, required(params, key));
    if (!v->is_number_unsigned() || v->get<uint64_t>() > max)
        return fail(ErrorCode::InvalidArgument, "\"{}\" must be a whole number from 0 to {}", key,
                    max);
    return v->get<uint64_t>();
}

/// An optional true or false: `absent` when the key is not given.
inline Result<bool> bool_param(const Json& params, const char* key, bool absent) {
    const auto it = params.find(key);
    if (it == params.end()) return absent;
    if (!it->is_boolean())
        return fail(ErrorCode::InvalidArgument, "\"{}\" must be true or false", key);
    return it->get<bool>();
}

inline Result<std::string> string_param(const Json& params, const char* key) {
    VIREO_TRY_ASSIGN(const Json* v, required(params, key));
    if (!v->is_string()) return fail(ErrorCode::InvalidArgument, "\"{}\" must be a string", key);
    return v->get<std::string>();
}

}  // namespace vireo::api
