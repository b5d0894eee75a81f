// Southbound sources (simulator, Modbus, MQTT) produce Readings into a
// ReadingSink. The pipeline owns both sides.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "core/prom_text.h"
#include "core/reading.h"
#include "core/status.h"

namespace vane {

// Accepts readings from sources. Thread-safe: many sources submit at once.
class ReadingSink {
 public:
  virtual ~ReadingSink() = default;
  ReadingSink() = default;
  ReadingSink(const ReadingSink&) = delete;
  ReadingSink& operator=(const ReadingSink&) = delete;

  // Hands one reading to the pipeline. Returns false when the pipeline is
  // stopping; the reading is then counted as not accepted by the caller's
  // policy. May wait a bounded time when ingestion is momentarily behind.
  virtual bool submit(Reading&& r) = 0;
};

// A source's lifecycle: start, pause, resume, stop. Called from one control
// thread; a source runs its own threads between start() and stop().
// A paused source must not call submit(); drivers whose peer keeps sending
// (MQTT) stop consuming while paused.
class Source {
 public:
  virtual ~Source() = default;
  Source() = default;
  Source(const Source&) = delete;
  Source& operator=(const Source&) = delete;

  virtual const std::string& name() const = 0;
  virtual Status start(ReadingSink& sink) = 0;
  virtual void pause() = 0;
  virtual void resume() = 0;
  // Stops and joins; after it returns, the sink is no longer used.
  virtual void stop() = 0;
  // True once a finite source (simulator with a limit) has produced everything.
  virtual bool finished() const { return false; }
  // The longest gap between two readings in normal running, for the progress
  // watch (systemd watchdog): 0 when the source may be silent for any time
  // (event-driven sources such as MQTT, or a finished one).
  virtual std::chrono::milliseconds expected_gap() const { return std::chrono::milliseconds(0); }
  // Goes up every time the source's loop goes round (a poll, a tick),
  // whether or not it produced a reading. Any thread.
  virtual std::uint64_t heartbeat() const { return 0; }
  // One line for the log at stop: what the source did ("" for nothing).
  virtual std::string summary() const { return ""; }

  // For /health and /metrics; any thread, never blocking on the peer.
  // Failed requests, connections and mappings so far.
  virtual std::uint64_t errors() const { return 0; }
  // False while the source knows its peer is unreachable (a broker that
  // dropped the connection, a TCP slave that refuses it).
  virtual bool connected() const { return true; }
  // Adds the driver's own series (vane_<driver>_*) to a scrape. Labels are
  // bounded by the config: source, configured device ids.
  virtual void export_metrics(PromText& /*out*/) const {}
};

}  // namespace vane
