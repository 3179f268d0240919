// libFuzzer target: the control API's request parser and dispatcher (api::handle_request)
// with methods that take their parameters the way vireo's do (sizes, bounded numbers,
// strings, CPU lists), and the Prometheus renderer over whatever JSON a method returns.
// Any input must give one well-formed JSON response line, never a crash or an exception. Each
// input is handled on a thread with the production stack size (kThreadStackSize, 1 MiB, as the
// API thread has), not on libFuzzer's 8 MiB main stack, so recursion that only the real stack
// cannot take shows up here; scripts/fuzz.sh feeds it requests up to past kMaxRequest.

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "api/metrics.hpp"
#include "api/params.hpp"
#include "api/server.hpp"
#include "base/limits.hpp"
#include "production_stack.hpp"

namespace {

using vireo::api::Json;

const std::map<std::string, vireo::api::Method>& methods() {
    using vireo::Result;
    static const std::map<std::string, vireo::api::Method> m{
        {"balloon.set",
         [](const Json& p) -> Result<Json> {
             VIREO_TRY_ASSIGN(const uint64_t bytes, vireo::api::size_param(p, "memory"));
             return Json{{"bytes", bytes}};
         }},
        {"vcpu.pin",
         [](const Json& p) -> Result<Json> {
             VIREO_TRY_ASSIGN(const uint64_t vcpu, vireo::api::uint_param(p, "vcpu", 1023));
             VIREO_TRY_ASSIGN(const Json* cpus, vireo::api::required(p, "cpus"));
             return Json{{"vcpu", vcpu}, {"cpus", *cpus}};
         }},
        {"destroy",
         [](const Json& p) -> Result<Json> {
             VIREO_TRY_ASSIGN(const std::string name, vireo::api::string_param(p, "name"));
             return Json{{"name", name}};
         }},
        {"down",
         [](const Json& p) -> Result<Json> {
             uint64_t t = 30;
             if (p.contains("timeout_s")) {
                 VIREO_TRY_ASSIGN(t, vireo::api::uint_param(p, "timeout_s", 3600));
             }
             return Json{{"t", t}};
         }},
        // Renders the params as if they were a domain's metrics.
        {"metrics",
         [](const Json& p) -> Result<Json> {
             return Json(vireo::api::prometheus_text({{"d", p}}));
         }},
        // A method that throws anyway (a bug): answered "failed", the server goes on.
        {"throws", [](const Json&) -> Result<Json> { throw std::runtime_error("boom"); }},
    };
    return m;
}

void handle(std::string_view line) {
    const std::string response = vireo::api::handle_request(methods(), line);
    const Json r = Json::parse(response, nullptr, false);
    if (r.is_discarded() || !r.is_object() || (r.contains("result") == r.contains("error")))
        std::abort();  // every request gets exactly one result or one error
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    vireo::fuzz::on_production_stack(vireo::fuzz::as_text(data, size), handle);
    return 0;
}
