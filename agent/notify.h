// systemd's notification protocol (Type=notify, WatchdogSec=), spoken
// directly: one datagram per message to the AF_UNIX socket in
// $NOTIFY_SOCKET (a leading '@' means the abstract namespace). No-ops when
// vane is not run by systemd (NOTIFY_SOCKET unset). No libsystemd, so the
// same code builds for every target.
#pragma once

#include <chrono>
#include <string>

namespace vane {

void notify_ready();
void notify_stopping();
void notify_status(const std::string& status);
void notify_watchdog();
void notify_reloading();
// The watchdog timeout systemd expects pings within ($WATCHDOG_USEC, for
// this process per $WATCHDOG_PID when set); 0 when there is no watchdog.
std::chrono::microseconds watchdog_timeout();

}  // namespace vane
