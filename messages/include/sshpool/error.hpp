// sshpool::error and sshpool::expected<T>: the result types of the public API.
// An error is a value: a code from `sshpool::errc` plus a message for humans.
#pragma once

#include <string>
#include <utility>
#include <variant>

#include "sshpool/errc.hpp"

namespace sshpool {

/// A failure: a typed code and a message that says what happened (never parse it).
class error {
public:
  error() = default;
  error(errc code, std::string message) : code_(code), message_(std::move(message)) {}

  errc code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }

  /// "code: message".
  std::string to_string() const;

  friend bool operator==(const error& x, errc y) noexcept { return x.code_ == y; }
  friend bool operator!=(const error& x, errc y) noexcept { return x.code_ != y; }

private:
  errc code_ = errc::none;
  std::string message_;
};

/// Either a value of type `T` or an `error`.
template <class T>
class expected {
public:
  expected(T value) : data_(std::in_place_index<0>, std::move(value)) {}
  expected(sshpool::error err) : data_(std::in_place_index<1>, std::move(err)) {}
  expected(errc code, std::string message)
      : data_(std::in_place_index<1>, sshpool::error{code, std::move(message)}) {}

  explicit operator bool() const noexcept { return data_.index() == 0; }
  bool has_value() const noexcept { return data_.index() == 0; }

  T& value() & { return std::get<0>(data_); }
  const T& value() const& { return std::get<0>(data_); }
  T&& value() && { return std::get<0>(std::move(data_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const sshpool::error& error() const { return std::get<1>(data_); }

private:
  std::variant<T, sshpool::error> data_;
};

/// Success or an `error`.
template <>
class expected<void> {
public:
  expected() = default;
  expected(sshpool::error err) : err_(std::move(err)) {}
  expected(errc code, std::string message) : err_(code, std::move(message)) {}

  explicit operator bool() const noexcept { return err_.code() == errc::none; }
  bool has_value() const noexcept { return err_.code() == errc::none; }
  const sshpool::error& error() const noexcept { return err_; }

private:
  sshpool::error err_;
};

} // namespace sshpool
