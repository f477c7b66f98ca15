// An agent session's policy (see agent_session.hpp) and the agent handle.
#include "agent_session.hpp"

#include <algorithm>
#include <cstdio>

#include "disconnect.hpp"
#include "key_loader.hpp"
#include "offered_key.hpp"
#include "sshpool/ssh/log.hpp"

namespace sshpool::ssh {

namespace {

using clock = std::chrono::steady_clock;

constexpr double log_burst = 20;
constexpr double log_per_second = 5;
/// User names longer than this, or with control characters, are nobody's (as the engine's
/// user ids).
constexpr std::size_t max_user_bytes = 1024;

constexpr const char* refusal_names[agent_refusal_count] = {
    "max_startups",     "max_startups_per_source",
    "penalized_source", "login_grace",
    "handshake_failed", "left_unauthenticated",
    "max_auth_tries",   "no_forward",
    "bad_service",      "agent_refused",
    "auth_method",      "auth_failed",
    "session_channel",  "direct_tcpip",
    "x11_channel",      "agent_channel",
    "other_channel",    "forward_not_allowed",
};

bool valid_user(const std::string& user) {
  return !user.empty() && user.size() <= max_user_bytes &&
         std::none_of(user.begin(), user.end(),
                      [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

/// "ED25519 SHA256:..." of a public key, for logs (never the key itself).
std::string key_summary(ssh_key key) {
  if (key == nullptr)
    return "no key";
  return std::string{ssh_key_type_to_char(ssh_key_type(key))} + " " + key_fingerprint(key);
}

const char* method_name(int method) {
  switch (method) {
  case SSH_AUTH_METHOD_PASSWORD:
    return "password";
  case SSH_AUTH_METHOD_INTERACTIVE:
    return "keyboard-interactive";
  case SSH_AUTH_METHOD_HOSTBASED:
    return "hostbased";
  default:
    return "an unknown method";
  }
}

} // namespace

const char* to_string(agent_refusal x) noexcept {
  auto i = static_cast<std::size_t>(x);
  return i < agent_refusal_count ? refusal_names[i] : "unknown";
}

std::string printable(std::string_view text, std::size_t max) {
  std::string out;
  for (char c : text.substr(0, max)) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f || c == '\\') {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  if (text.size() > max)
    out += "...";
  return out;
}

// -- agent_shared ---------------------------------------------------------------------------

agent_shared::agent_shared(agent_listener_options opts, agent_listener::lookup_fn lookup)
    : opts_(std::move(opts)), lookup_(std::move(lookup)), log_tokens_(log_burst),
      log_refill_(clock::now()) {}

std::shared_ptr<const agent_policy> agent_shared::lookup(const std::string& user) const {
  try {
    return lookup_(user);
  } catch (const std::exception& e) {
    log().error("agent listener: the user lookup threw: {}", e.what());
  } catch (...) {
    log().error("agent listener: the user lookup threw");
  }
  return nullptr;
}

void agent_shared::count(std::atomic<std::uint64_t>& counter) {
  counter.fetch_add(1, std::memory_order_relaxed);
  notify();
}

void agent_shared::notify() {
  { std::lock_guard<std::mutex> guard{wait_mx_}; }
  wait_cv_.notify_all();
}

void agent_shared::refuse(agent_refusal why, const std::string& text) {
  count(refused[static_cast<std::size_t>(why)]);
  std::uint64_t dropped = 0;
  {
    std::lock_guard<std::mutex> guard{log_mx_};
    auto now = clock::now();
    log_tokens_ = std::min(
        log_burst,
        log_tokens_ + log_per_second * std::chrono::duration<double>(now - log_refill_).count());
    log_refill_ = now;
    if (log_tokens_ < 1) {
      ++log_dropped_;
      return;
    }
    log_tokens_ -= 1;
    std::swap(dropped, log_dropped_);
  }
  if (dropped > 0)
    log().info("agent refused ({}): {} ({} more refusals not logged)", to_string(why), text,
               dropped);
  else
    log().info("agent refused ({}): {}", to_string(why), text);
}

// -- agent_session --------------------------------------------------------------------------

agent_session::agent_session(std::shared_ptr<agent_shared> shared, std::string source,
                             std::uint16_t source_port)
    : shared_(std::move(shared)), source_(std::move(source)), source_port_(source_port) {}

void agent_session::attach(ssh_session s) {
  ssh_set_auth_methods(s, SSH_AUTH_METHOD_PUBLICKEY);
  // Trap 18: with this callback every message is ours to answer (no queue, no defaults).
  ssh_set_message_callback(s, &agent_session::on_message, this);
  // Trap 16: libssh runs GSSAPI itself unless this callback exists: it refuses it.
  server_callbacks_.userdata = this;
  server_callbacks_.gssapi_select_oid_function = &agent_session::on_gssapi;
  ssh_callbacks_init(&server_callbacks_);
  ssh_set_server_callbacks(s, &server_callbacks_);
}

std::string agent_session::describe() const {
  return (user_.empty() ? std::string{"(unauthenticated)"} : printable(user_)) + " from " +
         source_ + ":" + std::to_string(source_port_);
}

int agent_session::on_message(ssh_session, ssh_message msg, void* self) {
  auto& me = *static_cast<agent_session*>(self);
  switch (ssh_message_type(msg)) {
  case SSH_REQUEST_SERVICE:
    me.on_service(msg);
    break;
  case SSH_REQUEST_AUTH:
    me.on_auth(msg);
    break;
  case SSH_REQUEST_CHANNEL_OPEN:
    me.on_channel_open(msg);
    break;
  case SSH_REQUEST_GLOBAL:
    me.on_global(msg);
    break;
  default: // channel requests: nothing is granted on any channel
    ssh_message_reply_default(msg);
    break;
  }
  return 0; // answered; libssh frees the message
}

ssh_string agent_session::on_gssapi(ssh_session, const char*, int, ssh_string*, void* self) {
  static_cast<agent_session*>(self)->auth_failed(agent_refusal::auth_method,
                                                 "gssapi-with-mic is not offered");
  return nullptr; // libssh answers with a failure
}

void agent_session::on_service(ssh_message msg) {
  // Trap 16: the default answer would accept any service.
  std::string service = ssh_message_service_service(msg);
  if (service == "ssh-userauth") {
    ssh_message_service_reply_success(msg);
    return;
  }
  end(agent_refusal::bad_service, "service '" + printable(service) + "' is not offered");
}

void agent_session::on_auth(ssh_message msg) {
  int method = ssh_message_subtype(msg);
  if (!authenticated_ && ended_ == std::nullopt) {
    if (method == SSH_AUTH_METHOD_PUBLICKEY) {
      on_publickey(msg);
      return;
    }
    if (method != SSH_AUTH_METHOD_NONE)
      auth_failed(agent_refusal::auth_method,
                  std::string{method_name(method)} + " for " + describe() + " is not offered");
  }
  ssh_message_reply_default(msg); // failure; "publickey" can continue
}

void agent_session::on_publickey(ssh_message msg) {
  const char* name = ssh_message_auth_user(msg);
  std::string user = name != nullptr ? name : "";
  ssh_publickey_state_e state = SSH_PUBLICKEY_STATE_NONE;
  ssh_key offered = offered_key(msg, state);
  std::string why;
  const authorized_key* key = match(user, offered, why);
  if (key != nullptr && state == SSH_PUBLICKEY_STATE_NONE) {
    ssh_message_auth_reply_pk_ok_simple(msg); // "this key would do": a signature follows
    return;
  }
  if (key != nullptr && state == SSH_PUBLICKEY_STATE_VALID) {
    ssh_message_auth_reply_success(msg, 0);
    authenticated_ = true;
    user_ = user;
    key_ = *key;
    shared_->count(shared_->authenticated);
    log().info("agent {} authenticated ({})", describe(), key_summary(offered));
    return;
  }
  if (key != nullptr)
    why = "the signature is not valid";
  // Counted before the answer: a test that saw the client give up finds it counted.
  auth_failed(agent_refusal::auth_failed, "publickey " + key_summary(offered) + " for '" +
                                              printable(user) + "' from " + source_ + ":" +
                                              std::to_string(source_port_) + ": " + why);
  ssh_message_reply_default(msg); // the same failure for an unknown user and a wrong key
}

const authorized_key* agent_session::match(const std::string& user, ssh_key offered,
                                           std::string& why) {
  if (offered == nullptr || !valid_user(user)) {
    why = "no such user";
    return nullptr;
  }
  if (user != policy_user_ || policy_ == nullptr) {
    policy_user_ = user;
    policy_ = shared_->lookup(user);
  }
  if (policy_ == nullptr) {
    why = "no such user";
    return nullptr;
  }
  char* blob = nullptr;
  if (ssh_pki_export_pubkey_base64(offered, &blob) != SSH_OK) {
    why = "the key cannot be read";
    return nullptr;
  }
  std::string base64 = blob;
  ssh_string_free_char(blob);
  why = "not an authorized key of the user";
  for (const auto& k : policy_->keys) {
    if (k.base64 != base64)
      continue;
    if (k.expiry && std::chrono::system_clock::now() >= *k.expiry) {
      why = "the key's expiry-time has passed";
      continue;
    }
    if (!source_allowed(k, source_)) {
      why = "the key's from= does not allow this address";
      continue;
    }
    return &k;
  }
  return nullptr;
}

void agent_session::auth_failed(agent_refusal why, const std::string& text) {
  shared_->refuse(why, text);
  if (++auth_failures_ >= shared_->options().max_auth_tries && ended_ == std::nullopt)
    end(agent_refusal::max_auth_tries, "Too many authentication failures");
}

void agent_session::on_channel_open(ssh_message msg) {
  auto why = agent_refusal::other_channel;
  std::string what = "a channel";
  switch (ssh_message_subtype(msg)) {
  case SSH_CHANNEL_SESSION:
    why = agent_refusal::session_channel;
    what = "a session channel (shell, exec, subsystem)";
    break;
  case SSH_CHANNEL_DIRECT_TCPIP:
    why = agent_refusal::direct_tcpip;
    what = "direct-tcpip to " + printable(ssh_message_channel_request_open_destination(msg)) + ":" +
           std::to_string(ssh_message_channel_request_open_destination_port(msg));
    break;
  case SSH_CHANNEL_X11:
    why = agent_refusal::x11_channel;
    what = "an x11 channel";
    break;
  case SSH_CHANNEL_AUTH_AGENT:
    why = agent_refusal::agent_channel;
    what = "an auth-agent channel";
    break;
  default:
    break;
  }
  shared_->refuse(why, describe() + " opened " + what);
  ssh_message_reply_default(msg); // SSH_MSG_CHANNEL_OPEN_FAILURE, administratively prohibited
}

void agent_session::on_global(ssh_message msg) {
  int type = ssh_message_subtype(msg);
  std::string address = ssh_message_global_request_address(msg) != nullptr
                            ? ssh_message_global_request_address(msg)
                            : "";
  auto port = ssh_message_global_request_port(msg);
  auto where = "'" + printable(address) + "':" + std::to_string(port);
  if (type == SSH_GLOBAL_REQUEST_CANCEL_TCPIP_FORWARD && authenticated_) {
    auto i = std::find_if(forwards_.begin(), forwards_.end(),
                          [&](const forward& f) { return f.address == address && f.port == port; });
    if (i != forwards_.end()) {
      ssh_message_global_request_reply_success(msg, 0);
      bool in_use = i == forwards_.begin();
      forwards_.erase(i);
      log().info("agent {} cancelled its forward {}", describe(), where);
      if (in_use)
        end(agent_refusal::no_forward, "the agent cancelled the forward in use");
      return;
    }
  }
  if (type == SSH_GLOBAL_REQUEST_TCPIP_FORWARD && authenticated_ && port > 0 && port <= 65535 &&
      listen_allowed(key_, address, static_cast<std::uint16_t>(port)) &&
      std::count(policy_->allowed_ports.begin(), policy_->allowed_ports.end(), port) > 0) {
    ssh_message_global_request_reply_success(msg, static_cast<std::uint16_t>(port));
    if (std::none_of(forwards_.begin(), forwards_.end(),
                     [&](const forward& f) { return f.address == address && f.port == port; })) {
      forwards_.push_back({address, static_cast<std::uint16_t>(port)});
      log().info("agent {} forwards {}", describe(), where);
    }
    return;
  }
  if (type == SSH_GLOBAL_REQUEST_TCPIP_FORWARD)
    shared_->refuse(agent_refusal::forward_not_allowed,
                    describe() + " asked to forward " + where + ", which is not allowed");
  else if (type == SSH_GLOBAL_REQUEST_CANCEL_TCPIP_FORWARD)
    log().info("agent {} cancelled {}, which it had not bound", describe(), where);
  ssh_message_reply_default(msg); // SSH_MSG_REQUEST_FAILURE
}

void agent_session::end(agent_refusal why, std::string message) {
  if (ended_ != std::nullopt)
    return;
  ended_ = why;
  end_message_ = std::move(message);
}

// -- agent_handle ---------------------------------------------------------------------------

agent_handle::agent_handle() noexcept = default;
agent_handle::agent_handle(std::unique_ptr<state> s) : state_(std::move(s)) {}
agent_handle::agent_handle(agent_handle&&) noexcept = default;
agent_handle& agent_handle::operator=(agent_handle&& other) noexcept {
  if (this != &other) {
    if (state_ != nullptr)
      refuse("the gateway did not take this agent");
    state_ = std::move(other.state_);
  }
  return *this;
}

agent_handle::~agent_handle() {
  if (state_ != nullptr)
    refuse("the gateway did not take this agent");
}

const std::string& agent_handle::user() const {
  return state_->agent->user();
}

const std::string& agent_handle::source_address() const {
  return state_->agent->source();
}

std::uint16_t agent_handle::source_port() const {
  return state_->agent->source_port();
}

const std::string& agent_handle::bound_address() const {
  return state_->agent->forwards().front().address;
}

std::uint16_t agent_handle::bound_port() const {
  return state_->agent->forwards().front().port;
}

std::uint64_t agent_handle::session_id() const {
  return state_->id;
}

agent_handle::operator bool() const noexcept {
  return state_ != nullptr;
}

void agent_handle::refuse(const std::string& reason) {
  if (state_ == nullptr)
    return;
  auto s = std::move(state_);
  s->agent->shared().refuse(agent_refusal::agent_refused, s->agent->describe() + " (session #" +
                                                              std::to_string(s->id) +
                                                              "): " + reason);
  disconnect(s->session, reason);
}

std::unique_ptr<agent_handle::state> agent_handle::release() noexcept {
  return std::move(state_);
}

} // namespace sshpool::ssh
