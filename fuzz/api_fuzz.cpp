// libFuzzer target: the control API's request parser and dispatcher (api::handle_request)
// with methods that take their parameters the way vireo's do (sizes, bounded numbers,
// strings, CPU lists), and the Prometheus renderer over whatever JSON a method returns.
// Any input must give one well-formed JSON response line, never a crash or an exception.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "api/metrics.hpp"
#include "api/params.hpp"
#include "api/server.hpp"

namespace {

using vireo::api::Json;

const std::map<std::string, vireo::api::Method>& methods() {
    static const std::map<std::string, vireo::api::Method> m{
        {"balloon.set",
         [](const Json& p) {
             return Json{{"bytes", vireo::api::size_param(p, "memory")}};
         }},
        {"vcpu.pin",
         [](const Json& p) {
             return Json{{"vcpu", vireo::api::uint_param(p, "vcpu", 1023)},
                         {"cpus", vireo::api::required(p, "cpus")}};
         }},
        {"destroy",
         [](const Json& p) {
             return Json{{"name", vireo::api::string_param(p, "name")}};
         }},
        {"down",
         [](const Json& p) {
             return Json{{"t", p.contains("timeout_s")
                                   ? vireo::api::uint_param(p, "timeout_s", 3600)
                                   : 30}};
         }},
        // Renders the params as if they were a domain's metrics.
        {"metrics",
         [](const Json& p) {
             return Json(vireo::api::prometheus_text({{"d", p}}));
         }},
        {"throws", [](const Json&) -> Json { throw std::runtime_error("boom"); }},
    };
    return m;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view line(reinterpret_cast<const char*>(data), size);
    const std::string response = vireo::api::handle_request(methods(), line);
    const Json r = Json::parse(response, nullptr, false);
    if (r.is_discarded() || !r.is_object() || (r.contains("result") == r.contains("error")))
        std::abort();  // every request gets exactly one result or one error
    return 0;
}
