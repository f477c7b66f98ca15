// Replaces CAF's default exception handler of an actor: the exception is logged with the
// actor's name and turned into an sshpool `internal` error (the actor then terminates and
// its monitors learn why), instead of CAF's silent default.
#pragma once

#include <exception>
#include <string>

#include <caf/error.hpp>

#include "sshpool/messages.hpp"
#include "sshpool/ssh/log.hpp"

namespace sshpool {

/// The message of the exception in `eptr`.
inline std::string describe_exception(const std::exception_ptr& eptr) {
  try {
    std::rethrow_exception(eptr);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown exception";
  }
}

/// Installs the logging exception handler on `self`; `on_exception` runs first (cleanup).
template <class Self, class OnException>
void install_exception_handler(Self* self, OnException on_exception) {
  self->set_exception_handler([self, on_exception](std::exception_ptr& eptr) -> caf::error {
    auto what = describe_exception(eptr);
    log().error("{} #{} failed: {}", self->name(), self->id(), what);
    on_exception(what);
    return make_caf_error(errc::internal, what);
  });
}

} // namespace sshpool
