// Type traits of the blocking facade's `call` (engine.cpp): it checks at compile time that
// the handler given for a reply takes the reply's types (a handler that does not match
// would never be called, and the call would end in a timeout).
#pragma once

#include <tuple>
#include <type_traits>

#include <caf/response_handle.hpp>

namespace sshpool::detail {

/// The types of a typed blocking request's reply, as a tuple (empty: a reply of no value,
/// which CAF lists as `void`).
template <class Handle>
struct reply_of;

template <class Self, template <class...> class List, class... Ts>
struct reply_of<caf::response_handle<Self, List<Ts...>, true>> {
  using type = std::tuple<Ts...>;
};

template <class Self, template <class...> class List>
struct reply_of<caf::response_handle<Self, List<void>, true>> {
  using type = std::tuple<>;
};

/// The parameter types of a handler (a lambda), decayed, as a tuple.
template <class F>
struct params_of : params_of<decltype(&F::operator())> {};

template <class C, class R, class... As>
struct params_of<R (C::*)(As...) const> {
  using type = std::tuple<std::decay_t<As>...>;
};

template <class C, class R, class... As>
struct params_of<R (C::*)(As...)> {
  using type = std::tuple<std::decay_t<As>...>;
};

} // namespace sshpool::detail
