// librdkafka's error codes, and the one log line that carries a broker's
// refusal no callback reports, as uplink causes (uplink_state.h). Pure
// functions: any thread.
#pragma once

#include <optional>
#include <string>

#include "uplink_state.h"

namespace vane {

// The reason an error code (rd_kafka_resp_err_t) stands for. kNone for the
// codes that say nothing about the link: no error, a message vane purged
// itself, the client shutting down, and local conditions other than the
// connection's (a full queue, a bad argument). Any other broker code is
// kBrokerError.
UplinkReason kafka_reason(int err);

// The cause of an error code: its reason, librdkafka's name for it without
// the leading underscores of local codes (NOT_ENOUGH_REPLICAS,
// ALL_BROKERS_DOWN, AUTHENTICATION) and `words` (librdkafka's text; one
// line, at most a few hundred characters).
UplinkCause kafka_cause(int err, const std::string& words);

// A produce request the broker refused and librdkafka retries by itself
// (NOT_ENOUGH_REPLICAS, REQUEST_TIMED_OUT, NOT_LEADER...): with message.
// timeout.ms 0 no delivery report and no error callback ever tells it; only
// the debug line of context "msg" does (facility MSGSET, "...: topic [p]:
// MessageSet with N message(s) (...) encountered error: <text> (actions
// Retry,...)"). Returns the cause, with the broker, topic and partition in
// its words; nullopt for every other line, for local errors (the error
// callback reports those) and for permanent ones (their delivery reports
// do).
std::optional<UplinkCause> kafka_cause_from_log(const char* facility, const char* line);

}  // namespace vane
