// Type traits of the facade's calls (engine.cpp, handoff.hpp): they check at compile time
// that the handler given for a reply takes the reply's types (a handler that does not match
// would never be called, and the call would end in an error instead of failing to compile).
#pragma once

#include <tuple>
#include <type_traits>

#include <caf/response_type.hpp>

namespace sshpool::detail {

/// The types of a reply, as a tuple (empty: a reply of no value, which CAF lists as
/// `void`).
template <class List>
struct reply_tuple;

template <class... Ts>
struct reply_tuple<caf::detail::type_list<Ts...>> {
  using type = std::tuple<Ts...>;
};

template <>
struct reply_tuple<caf::detail::type_list<void>> {
  using type = std::tuple<>;
};

/// The types of the reply of an actor of type `Handle` to the request `Ts...`.
template <class Handle, class... Ts>
using reply_tuple_t = typename reply_tuple<
    caf::response_type_t<typename Handle::signatures, std::decay_t<Ts>...>>::type;

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
