# The vane .deb: install rules for everything that is not a target, and the
# CPack DEB settings. `cpack -G DEB` in a build dir writes
# vane_<version>_<arch>.deb; tests/package checks what is in it.
#
# Layout (CPack installs under /usr; /etc is absolute):
#   /usr/bin/vane, /usr/bin/vane-sim         targets (agent/, simulator/)
#   /usr/lib/systemd/system/vane.service     systemd/ (unit names /usr/bin/vane)
#   /usr/lib/sysusers.d/vane.conf            user and group vane
#   /usr/lib/tmpfiles.d/vane.conf            /var/lib/vane, /etc/vane
#   /etc/vane/vane.jsonc                     conffile, from examples/gateway.jsonc
#   /usr/share/vane/schemas/                 examples/schemas/
#   /usr/share/doc/vane/                     README.md, docs/*.md
#
# vane-sim stays in the package: it is small, needs no library vane does not
# need already, and lets a field engineer test a gateway's Modbus path
# without a turbine (vane-sim modbus --listen 127.0.0.1:5020 --turbines 3).

install(FILES ${PROJECT_SOURCE_DIR}/systemd/vane.service
        DESTINATION lib/systemd/system)
install(FILES ${PROJECT_SOURCE_DIR}/systemd/vane.sysusers
        DESTINATION lib/sysusers.d RENAME vane.conf)
install(FILES ${PROJECT_SOURCE_DIR}/systemd/vane.tmpfiles
        DESTINATION lib/tmpfiles.d RENAME vane.conf)
install(FILES ${PROJECT_SOURCE_DIR}/examples/gateway.jsonc
        DESTINATION /etc/vane RENAME vane.jsonc)
install(FILES
          ${PROJECT_SOURCE_DIR}/examples/schemas/environment.schema.json
          ${PROJECT_SOURCE_DIR}/examples/schemas/turbine.schema.json
        DESTINATION share/vane/schemas)
install(FILES
          ${PROJECT_SOURCE_DIR}/README.md
          ${PROJECT_SOURCE_DIR}/docs/BENCHMARKS.md
          ${PROJECT_SOURCE_DIR}/docs/CONFIG.md
          ${PROJECT_SOURCE_DIR}/docs/MODBUS.md
          ${PROJECT_SOURCE_DIR}/docs/MQTT.md
          ${PROJECT_SOURCE_DIR}/docs/OBSERVABILITY.md
          ${PROJECT_SOURCE_DIR}/docs/RELIABILITY.md
        DESTINATION share/doc/vane)
# For the monitoring host: the Grafana dashboard and the alert rules.
install(FILES
          ${PROJECT_SOURCE_DIR}/monitoring/README.md
          ${PROJECT_SOURCE_DIR}/monitoring/grafana/vane-dashboard.json
          ${PROJECT_SOURCE_DIR}/monitoring/prometheus/vane-alerts.yml
          ${PROJECT_SOURCE_DIR}/monitoring/prometheus/scrape-example.yml
        DESTINATION share/vane/monitoring)

# Debian architecture of the target, not of the build machine: a cross
# toolchain sets CMAKE_SYSTEM_PROCESSOR (aarch64, arm), where
# `dpkg --print-architecture` would name the host.
string(TOLOWER "${CMAKE_SYSTEM_PROCESSOR}" _vane_cpu)
if(_vane_cpu MATCHES "^(x86_64|amd64)$")
  set(VANE_DEB_ARCH amd64)
elseif(_vane_cpu MATCHES "^(aarch64|arm64)$")
  set(VANE_DEB_ARCH arm64)
elseif(_vane_cpu MATCHES "^arm")
  set(VANE_DEB_ARCH armhf)   # Debian's 32-bit ARM port for ARMv7 hard-float
elseif(_vane_cpu MATCHES "^i[3-6]86$")
  set(VANE_DEB_ARCH i386)
elseif(NOT CMAKE_CROSSCOMPILING)
  execute_process(COMMAND dpkg --print-architecture
                  OUTPUT_VARIABLE VANE_DEB_ARCH OUTPUT_STRIP_TRAILING_WHITESPACE)
endif()
if(NOT VANE_DEB_ARCH)
  message(FATAL_ERROR "Packaging: no Debian architecture for CMAKE_SYSTEM_PROCESSOR '${CMAKE_SYSTEM_PROCESSOR}'")
endif()

# Dependencies: dpkg-shlibdeps reads them off the ELF files and the installed
# libraries' shlibs/symbols files. Cross builds work the same when the
# target's libraries are installed as multiarch packages (libfoo:arm64, as
# the cross -dev packages pull in): it resolves each NEEDED library in
# /usr/lib/<triplet> for the ELF's machine (DEB_HOST_ARCH, set for cpack
# below, pins the architecture instead of guessing it from the host's cc).
# A target library that is not installed fails cpack; one that no package
# owns is left out silently (CPack passes --ignore-missing-info). Where the
# target's libraries cannot be installed, configure with
# -DVANE_DEB_SHLIBDEPS=OFF to use the fixed list instead (Debian 12 package
# names; keep it in step with the libraries linked). tests/package checks
# the Depends either way.
option(VANE_DEB_SHLIBDEPS "Compute the .deb's Depends with dpkg-shlibdeps" ON)
# What dpkg-shlibdeps gives on Debian 12 (amd64 and arm64 alike).
set(VANE_DEB_FIXED_DEPENDS
    "libc6 (>= 2.34), libgcc-s1 (>= 3.0), libpcre2-8-0 (>= 10.22), librdkafka1 (>= 1.4.2), libsqlite3-0 (>= 3.20.0), libstdc++6 (>= 12)")
if(VANE_DRIVER_MODBUS)
  string(APPEND VANE_DEB_FIXED_DEPENDS ", libmodbus5 (>= 3.0.2)")
endif()
if(VANE_DRIVER_MQTT)
  string(APPEND VANE_DEB_FIXED_DEPENDS ", libpaho-mqtt1.3 (>= 1.3.0), libpaho-mqttpp3-1 (>= 1.2.0)")
endif()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME vane)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "vane")
set(VANE_DEB_MAINTAINER "vane maintainers <vane@localhost>" CACHE STRING
    "Maintainer field of the .deb")
set(CPACK_PACKAGE_CONTACT "${VANE_DEB_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "edge gateway agent: sensors to Kafka, store and forward")
set(CPACK_PACKAGE_DESCRIPTION
"vane reads wind-turbine and industrial sensors (Modbus TCP/RTU, MQTT, a
built-in simulator), checks every reading against a JSON Schema at the edge,
keeps accepted readings in a durable SQLite buffer while the uplink is down
and forwards them to Apache Kafka. Rejected readings go to a dead-letter
topic with the reason.

The package installs a systemd unit but neither enables nor starts it: edit
/etc/vane/vane.jsonc, then systemctl enable --now vane. vane-sim, a Modbus
TCP and MQTT device simulator for testing a gateway, is included.")
set(CPACK_DEBIAN_PACKAGE_NAME vane)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_DEBIAN_PACKAGE_RELEASE "")
set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE ${VANE_DEB_ARCH})
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
if(VANE_DEB_SHLIBDEPS)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
else()
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS OFF)
  set(CPACK_DEBIAN_PACKAGE_DEPENDS "${VANE_DEB_FIXED_DEPENDS}")
endif()
# Maintainer scripts and conffiles (CPack marks nothing under /etc as a
# conffile by itself); strict permissions: scripts 0755, the rest 0644.
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/cmake/debian/conffiles
    ${PROJECT_SOURCE_DIR}/cmake/debian/postinst
    ${PROJECT_SOURCE_DIR}/cmake/debian/prerm
    ${PROJECT_SOURCE_DIR}/cmake/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# Debug info stays in the build dir; a gateway's flash gets stripped binaries.
set(CPACK_STRIP_FILES ON)

# Read by cpack when it runs (not at configure time): the environment for
# dpkg-shlibdeps.
set(CPACK_PROJECT_CONFIG_FILE ${PROJECT_BINARY_DIR}/VaneCPackOptions.cmake)
file(WRITE ${CPACK_PROJECT_CONFIG_FILE}
  "# Generated by cmake/Packaging.cmake: dpkg-shlibdeps resolves libraries for the\n"
  "# target architecture, not the build machine's.\n"
  "set(ENV{DEB_HOST_ARCH} ${VANE_DEB_ARCH})\n")

include(CPack)
