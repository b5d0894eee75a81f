// `vane probe modbus`: one read from one device, printed raw and decoded,
// for checking wiring and register maps in the field.
#pragma once

#include <cstdio>
#include <string>

namespace vane::modbus {

struct ProbeOptions {
  std::string host;  // TCP, or
  int port = 502;
  std::string serial;  // RTU
  int baud = 9600;
  char parity = 'N';
  int data_bits = 8, stop_bits = 1;
  int unit = 1;
  std::string table = "holding";
  int address = 0;
  int count = 1;
  std::string type;  // optional: decode as this type
  std::string order = "ABCD";
  int timeout_ms = 1000;
};

// Exit code: 0 read and printed, 1 the device did not answer or refused,
// 2 bad options. Output to `out`, errors to stderr.
int probe(const ProbeOptions& o, std::FILE* out);

}  // namespace vane::modbus
