// sshpool: per-user pools of SSH connections that forward HTTP requests through
// direct-tcpip channels. Include this for the blocking facade; include
// <sshpool/actors.hpp> as well to talk to the actors from a CAF-based service.
#pragma once

#include "sshpool/config.hpp"
#include "sshpool/engine.hpp"
#include "sshpool/errc.hpp"
#include "sshpool/error.hpp"
#include "sshpool/types.hpp"
