#include "notify.h"

#ifdef VANE_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace vane {

#ifdef VANE_HAVE_SYSTEMD
void notify_ready() { sd_notify(0, "READY=1"); }
void notify_stopping() { sd_notify(0, "STOPPING=1"); }
void notify_status(const std::string& status) { sd_notifyf(0, "STATUS=%s", status.c_str()); }
#else
void notify_ready() {}
void notify_stopping() {}
void notify_status(const std::string&) {}
#endif

}  // namespace vane
