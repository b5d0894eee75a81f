// systemd notification (Type=notify). No-ops when not run by systemd
// (NOTIFY_SOCKET unset) or when built without libsystemd.
#pragma once

#include <string>

namespace vane {

void notify_ready();
void notify_stopping();
void notify_status(const std::string& status);

}  // namespace vane
