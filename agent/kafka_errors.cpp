#include "kafka_errors.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <cstring>
#include <string_view>
#include <unordered_map>

namespace vane {
namespace {

// Words from librdkafka go to the log, /health and the status page: one
// line, bounded.
constexpr std::size_t kMaxWords = 512;

std::string one_line(std::string_view s) {
  std::string out;
  out.reserve(std::min(s.size(), kMaxWords));
  for (char c : s) {
    if (out.size() >= kMaxWords) {
      out += "...";
      break;
    }
    out.push_back(static_cast<unsigned char>(c) < 0x20 ? ' ' : c);
  }
  return out;
}

std::string code_name(rd_kafka_resp_err_t err) {
  const char* name = rd_kafka_err2name(err);
  while (*name == '_') ++name;
  return name;
}

// librdkafka's description of each code (what rd_kafka_err2str gives and
// its debug lines print) back to the code.
const std::unordered_map<std::string_view, rd_kafka_resp_err_t>& codes_by_text() {
  static const auto* map = [] {
    auto* m = new std::unordered_map<std::string_view, rd_kafka_resp_err_t>();
    const rd_kafka_err_desc* descs = nullptr;
    std::size_t n = 0;
    rd_kafka_get_err_descs(&descs, &n);
    for (std::size_t i = 0; i < n; ++i)
      if (descs[i].desc && descs[i].name) m->emplace(descs[i].desc, descs[i].code);
    return m;
  }();
  return *map;
}

}  // namespace

UplinkReason kafka_reason(int code) {
  using R = UplinkReason;
  switch (static_cast<rd_kafka_resp_err_t>(code)) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
    case RD_KAFKA_RESP_ERR__DESTROY:
      return R::kNone;

    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
      return R::kNotEnoughReplicas;

    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_SASL_MECHANISM:
    case RD_KAFKA_RESP_ERR_ILLEGAL_SASL_STATE:
    case RD_KAFKA_RESP_ERR_UNACCEPTABLE_CREDENTIAL:
      return R::kAuthentication;

    case RD_KAFKA_RESP_ERR__SSL:
      return R::kTls;

    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_DELEGATION_TOKEN_AUTHORIZATION_FAILED:
      return R::kAuthorization;

    case RD_KAFKA_RESP_ERR__FENCED:
    case RD_KAFKA_RESP_ERR_PRODUCER_FENCED:
    case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH:
    case RD_KAFKA_RESP_ERR_TRANSACTION_COORDINATOR_FENCED:
      return R::kFenced;

    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
      return R::kUnknownTopic;

    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_REPLICA_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH:
    case RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH:
    case RD_KAFKA_RESP_ERR_ELIGIBLE_LEADERS_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_PREFERRED_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
      return R::kUnavailable;

    case RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED:
      return R::kThrottled;

    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
      return R::kTimeout;

    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
      return R::kBrokersDown;
    case RD_KAFKA_RESP_ERR__TRANSPORT:
      return R::kTransport;
    case RD_KAFKA_RESP_ERR__RESOLVE:
      return R::kResolve;

    default:
      // Local conditions other than the above are the client's own (a full
      // queue, a bad argument, an unsupported feature): not the link's.
      return code < 0 ? R::kNone : R::kBrokerError;
  }
}

UplinkCause kafka_cause(int err, const std::string& words) {
  UplinkCause c;
  c.reason = kafka_reason(err);
  c.code = code_name(static_cast<rd_kafka_resp_err_t>(err));
  c.detail = one_line(words);
  return c;
}

std::optional<UplinkCause> kafka_cause_from_log(const char* facility, const char* line) {
  if (std::strcmp(facility, "MSGSET") != 0) return std::nullopt;
  std::string_view s(line);
  constexpr std::string_view kError = " encountered error: ", kActions = " (actions ", kSet = "MessageSet with ";
  const auto at = s.find(kError);
  if (at == std::string_view::npos) return std::nullopt;
  const auto text_at = at + kError.size();
  const auto actions_at = s.find(kActions, text_at);
  if (actions_at == std::string_view::npos) return std::nullopt;
  const std::string_view text = s.substr(text_at, actions_at - text_at);
  const std::string_view actions = s.substr(actions_at + kActions.size());
  // Permanent failures end in delivery reports, which say it themselves.
  if (actions.find("Retry") == std::string_view::npos && actions.find("Refresh") == std::string_view::npos)
    return std::nullopt;
  const auto& codes = codes_by_text();
  const auto it = codes.find(text);
  // Local ones (a dropped connection) reach the error callback.
  if (it == codes.end() || it->second <= 0) return std::nullopt;
  // Who said it: "[thrd:...]: broker/id: topic [p]: MessageSet with ..." ->
  // "broker/id: topic [p]: <text>".
  std::string_view who = s.substr(0, s.rfind(kSet, at) == std::string_view::npos ? 0 : s.rfind(kSet, at));
  if (who.rfind("[thrd:", 0) == 0) {
    const auto close = who.find("]: ");
    who = close == std::string_view::npos ? std::string_view() : who.substr(close + 3);
  }
  return kafka_cause(it->second, std::string(who) + std::string(text));
}

}  // namespace vane
