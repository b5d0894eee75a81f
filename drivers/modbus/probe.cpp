#include "modbus/probe.h"

#include <modbus/modbus.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "modbus/register_map.h"

namespace vane::modbus {

int probe(const ProbeOptions& o, std::FILE* out) {
  const auto table = parse_table(o.table);
  if (!table) {
    std::fprintf(stderr, "vane probe: --table must be coil, discrete, holding or input, got \"%s\"\n", o.table.c_str());
    return 2;
  }
  const bool bits = *table == Table::kCoil || *table == Table::kDiscrete;
  const int limit = bits ? kMaxBits : kMaxRegisters;
  if (o.count < 1 || o.count > limit || o.address < 0 || o.address + o.count > 65536) {
    std::fprintf(stderr, "vane probe: --count must be 1..%d and the block within 0..65535\n", limit);
    return 2;
  }
  std::optional<Type> type;
  if (!o.type.empty()) {
    type = parse_type(o.type);
    if (!type || *type == Type::kBool || bits) {
      std::fprintf(stderr, "vane probe: --type must be a register type (int16 ... float64, string), got \"%s\"\n",
                   o.type.c_str());
      return 2;
    }
  }
  const auto order = parse_order(o.order);
  if (!order) {
    std::fprintf(stderr, "vane probe: --order must be ABCD, CDAB, BADC or DCBA\n");
    return 2;
  }
  if (o.host.empty() == o.serial.empty()) {
    std::fprintf(stderr, "vane probe: give either --host or --serial\n");
    return 2;
  }
  std::unique_ptr<modbus_t, void (*)(modbus_t*)> ctx(
      o.serial.empty() ? modbus_new_tcp_pi(o.host.c_str(), std::to_string(o.port).c_str())
                       : modbus_new_rtu(o.serial.c_str(), o.baud, o.parity, o.data_bits, o.stop_bits),
      [](modbus_t* m) {
        modbus_close(m);
        modbus_free(m);
      });
  if (!ctx) {
    std::fprintf(stderr, "vane probe: %s\n", modbus_strerror(errno));
    return 2;
  }
  modbus_set_response_timeout(ctx.get(), static_cast<std::uint32_t>(o.timeout_ms / 1000),
                              static_cast<std::uint32_t>((o.timeout_ms % 1000) * 1000));
  modbus_set_slave(ctx.get(), o.unit);
  const std::string where = o.serial.empty() ? o.host + ":" + std::to_string(o.port) : o.serial;
  if (modbus_connect(ctx.get()) != 0) {
    std::fprintf(stderr, "vane probe: cannot connect to %s: %s\n", where.c_str(), modbus_strerror(errno));
    return 1;
  }
  std::vector<std::uint16_t> regs(static_cast<std::size_t>(o.count));
  std::vector<std::uint8_t> bitbuf(static_cast<std::size_t>(o.count));
  int rc = -1;
  switch (*table) {
    case Table::kHolding: rc = modbus_read_registers(ctx.get(), o.address, o.count, regs.data()); break;
    case Table::kInput: rc = modbus_read_input_registers(ctx.get(), o.address, o.count, regs.data()); break;
    case Table::kCoil: rc = modbus_read_bits(ctx.get(), o.address, o.count, bitbuf.data()); break;
    case Table::kDiscrete: rc = modbus_read_input_bits(ctx.get(), o.address, o.count, bitbuf.data()); break;
  }
  if (rc != o.count) {
    std::fprintf(stderr, "vane probe: %s unit %d %s %d..%d: %s\n", where.c_str(), o.unit, o.table.c_str(), o.address,
                 o.address + o.count - 1, rc < 0 ? modbus_strerror(errno) : "short answer");
    return 1;
  }
  std::fprintf(out, "%s unit %d %s %d..%d:\n", where.c_str(), o.unit, o.table.c_str(), o.address, o.address + o.count - 1);
  for (int i = 0; i < o.count; ++i) {
    if (bits) std::fprintf(out, "  %5d  %d\n", o.address + i, bitbuf[static_cast<std::size_t>(i)]);
    else std::fprintf(out, "  %5d  0x%04x  %5u\n", o.address + i, regs[static_cast<std::size_t>(i)], regs[static_cast<std::size_t>(i)]);
  }
  if (type) {
    Entry e;
    e.type = *type;
    e.order = *order;
    e.length = o.count;
    const int step = e.count();
    std::fprintf(out, "as %s %s:\n", o.type.c_str(), o.order.c_str());
    for (int a = 0; a + step <= o.count; a += step) {
      e.address = o.address + a;
      auto v = decode(e, regs.data(), regs.size(), o.address);
      std::string text;
      if (v) {
        if (auto* d = std::get_if<double>(&*v)) {
          char b[64];
          std::snprintf(b, sizeof b, "%.9g", *d);
          text = b;
        } else if (auto* n = std::get_if<std::int64_t>(&*v)) {
          text = std::to_string(*n);
        } else if (auto* s = std::get_if<std::string>(&*v)) {
          text = "\"" + *s + "\"";
        }
      }
      std::fprintf(out, "  %5d  %s\n", e.address, text.c_str());
    }
  }
  return 0;
}

}  // namespace vane::modbus
