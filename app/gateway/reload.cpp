// The configuration reload: SIGHUP, taken by the reload thread, re-reads the configuration
// (the start's load_config, same checks); an invalid one is logged with the reason and
// changes nothing. A valid one is applied by `reload`, the one place where each part of a
// new configuration takes effect:
//
//   SIGHUP ──► load ── invalid ──► log reload_refused (the old configuration stays)
//                │ valid
//                ▼
//   reload: client authentication on now, none in the new file ──► refused whole (a reload
//           never opens the gateway; nor does a user whose endpoint fails: authentication
//           stays required, and that user keeps its endpoint but takes the new credentials)
//           settings that cannot change at run time ──► warning naming them, old values kept
//           TLS certificate and key ─► read again (http_server::reload_tls: new connections
//                                     get them, live ones keep theirs)
//           users added or changed ─► engine.set_endpoint (changed: new connections use the
//                                     new endpoint, idle old ones close, leased ones on release)
//           user sets, credentials ► posted to the loop in one step (routing: known users,
//                                     agent users; client authentication: the applied
//                                     users' API keys and the new jwt settings)
//           users removed ─────────► engine.remove_endpoint, one thread each (new requests:
//                                    404 unknown_user; in flight: finish within the grace)
//
// Users whose endpoint is unchanged are not touched, nor are their connections.
#include <algorithm>
#include <unordered_map>

#include "gateway/auth_settings.hpp"
#include "gateway/gateway_impl.hpp"
#include "gateway/logging.hpp"
#include "gateway/reload_signal.hpp"

namespace sshpool::gateway {

namespace {

using spdlog::level::level_enum;

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (auto& n : names)
    out += (out.empty() ? "" : ",") + n;
  return out;
}

} // namespace

void gateway::impl::handle_reload(config_source load) {
  if (reload_thread_.joinable())
    return;
  reload_thread_ = std::thread([this, load = std::move(load)] {
    hangup_signal hup; // already blocked in every thread: this only names the set
    for (;;) {
      hup.wait();
      if (reload_stop_.load())
        return;
      log_event(level_enum::info, "reload_started", {});
      auto next = load();
      if (!next) {
        log_event(level_enum::err, "reload_refused",
                  {field("error", next.error().message()),
                   field("hint", std::string{"the running configuration stays"})});
        continue;
      }
      reload(*next);
    }
  });
}

void gateway::impl::stop_reload() {
  if (!reload_thread_.joinable())
    return;
  reload_stop_.store(true);
  hangup_signal::wake(reload_thread_.native_handle());
  reload_thread_.join();
}

void gateway::impl::reload(const gateway_config& next) {
  std::lock_guard<std::mutex> guard{reload_mutex_};
  if (engine_->is_shutting_down()) {
    log_event(level_enum::warn, "reload_ignored", {field("reason", std::string{"draining"})});
    return;
  }
  if (auth_required_ && !auth_configured(next)) {
    log_event(level_enum::err, "reload_refused",
              {field("error", std::string{"client authentication is on, and the new "
                                          "configuration has none (no api_keys_sha256, no jwt)"}),
               field("hint", std::string{"the running configuration stays; a restart can "
                                         "switch authentication off"})});
    return;
  }
  if (auto fixed = changed_settings(cfg_, next); !fixed.empty())
    log_event(level_enum::warn, "reload_settings_kept",
              {field("settings", joined(fixed)),
               field("hint", std::string{"these keep their value until a restart"})});
  if (!cfg_.tls_cert_file.empty())
    static_cast<void>(server_->reload_tls()); // a failure is logged; the current pair stays

  std::unordered_map<std::string, const user_config*> old_users;
  for (auto& u : cfg_.users)
    old_users.emplace(u.name, &u);
  std::vector<user_config> applied;
  std::vector<std::string> added, changed, removed, failed;
  for (auto& u : next.users) {
    auto old = old_users.find(u.name);
    bool is_new = old == old_users.end();
    if (!is_new && old->second->ep == u.ep) {
      applied.push_back(u); // the same endpoint: its connections stay
      old_users.erase(old);
      continue;
    }
    if (auto ok = engine_->set_endpoint(u.name, u.ep); !ok) {
      // The key moved between the check and now, say: the user keeps what it had.
      log_event(level_enum::err, "reload_user_failed",
                {field("user", u.name), field("error", ok.error().message())});
      failed.push_back(u.name);
      if (!is_new) {
        // The old endpoint, the new credentials (a key revoked in this edit is revoked).
        auto kept = *old->second;
        kept.api_keys_sha256 = u.api_keys_sha256;
        kept.forward_authorization = u.forward_authorization;
        applied.push_back(std::move(kept));
        old_users.erase(old);
      }
      continue;
    }
    (is_new ? added : changed).push_back(u.name);
    applied.push_back(u);
    if (!is_new)
      old_users.erase(old);
  }
  for (auto& [name, u] : old_users)
    removed.push_back(name);
  std::sort(removed.begin(), removed.end());

  // The routing: requests for added users are forwarded, removed ones get 404 (a request
  // that passed the check just before gets unknown_user from the engine: the same 404); a
  // removed user's API key no longer authenticates, an added one's does.
  gateway_config auth_view = next;
  auth_view.users = applied;
  auth_required_ = auth_required_ || auth_configured(next);
  authenticator auth{auth_view, auth_required_};
  std::unordered_set<std::string> known;
  std::vector<std::string> agents;
  for (auto& u : applied) {
    known.insert(u.name);
    if (u.ep.mode == endpoint_mode::agent)
      agents.push_back(u.name);
  }
  server_->queue()->post([this, known = std::move(known), agents = std::move(agents),
                          auth = std::move(auth)]() mutable {
    known_users_ = std::move(known);
    agent_users_ = std::move(agents);
    auth_ = std::move(auth);
  });
  cfg_.users = std::move(applied);

  // Removed users drain in parallel, each within the grace period.
  std::vector<std::thread> drains;
  for (auto& name : removed)
    drains.emplace_back([this, name] {
      auto report = engine_->remove_endpoint(name);
      if (!report) {
        log_event(level_enum::warn, "user_removed",
                  {field("user", name), field("error", report.error().message())});
        return;
      }
      log_event(level_enum::info, "user_removed",
                {field("user", name), field("in_flight_at_start", report->in_flight_at_start),
                 field("completed_during_drain", report->completed_during_drain),
                 field("cut", report->cut)});
    });
  for (auto& t : drains)
    t.join();
  log_event(level_enum::info, "reloaded",
            {field("added", joined(added)), field("changed", joined(changed)),
             field("removed", joined(removed)), field("failed", joined(failed)),
             field("users", std::uint64_t{cfg_.users.size()})});
}

} // namespace sshpool::gateway
