#include "sshpool/messages.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/sec.hpp>

namespace sshpool {

void detail::add_public_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_types<caf::id_block::sshpool>();
  cfg.add_error_category(caf::atom("sshpool"),
                         [](uint8_t code, caf::atom_value, const caf::message& ctx) {
                           std::string result = "sshpool::";
                           result += to_string(static_cast<errc>(code));
                           if (ctx.size() == 1 && ctx.match_element<std::string>(0)) {
                             result += ": ";
                             result += ctx.get_as<std::string>(0);
                           }
                           return result;
                         });
}

caf::error make_caf_error(errc code, std::string message) {
  return caf::make_error(code, std::move(message));
}

caf::error make_caf_error(const error& err) {
  return caf::make_error(err.code(), err.message());
}

error from_caf_error(const caf::error& err, errc fallback) {
  if (!err)
    return {};
  if (err.category() == caf::atom("sshpool")) {
    std::string message;
    auto& ctx = err.context();
    if (ctx.size() == 1 && ctx.match_element<std::string>(0))
      message = ctx.get_as<std::string>(0);
    return {static_cast<errc>(err.code()), std::move(message)};
  }
  if (err.category() == caf::atom("system")) {
    auto code = static_cast<caf::sec>(err.code());
    if (code == caf::sec::request_timeout)
      return {errc::timeout, "no reply within the deadline"};
    return {fallback, caf::to_string(code)};
  }
  return {fallback, caf::to_string(err)};
}

} // namespace sshpool
