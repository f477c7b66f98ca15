// The oracle check of every libFuzzer target here: a violated property traps, which libFuzzer
// reports as a crash and keeps the input of.
#pragma once

namespace sshpool::fuzz {

/// Traps unless `ok`.
inline void check(bool ok) {
  if (!ok)
    __builtin_trap();
}

} // namespace sshpool::fuzz
