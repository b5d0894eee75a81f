# vane_add_driver(NAME SOURCES ... LIBS ...)
# Defines the static library vane_driver_<NAME> and registers it with the
# agent. The agent's driver registry (agent/drivers.cpp) sees
# VANE_HAVE_DRIVER_<NAME> and calls the driver's register function.
set(VANE_DRIVERS "" CACHE INTERNAL "drivers built into the agent")
function(vane_add_driver name)
  cmake_parse_arguments(D "" "" "SOURCES;LIBS" ${ARGN})
  add_library(vane_driver_${name} STATIC ${D_SOURCES})
  target_include_directories(vane_driver_${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/..)
  target_link_libraries(vane_driver_${name} PUBLIC vane_core ${D_LIBS})
  set(VANE_DRIVERS ${VANE_DRIVERS} ${name} CACHE INTERNAL "drivers built into the agent")
endfunction()
