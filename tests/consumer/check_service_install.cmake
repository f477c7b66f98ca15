# Installs the build tree as a package would (DESTDIR=WORK_DIR/root, prefix /usr/local) and
# checks what running sshpool-demo as a systemd service needs: the binary, the example
# config (valid JSON), and the unit, which names the installed binary, reloads with SIGHUP,
# is sandboxed and is accepted by `systemd-analyze verify` without a complaint (where
# systemd-analyze exists; else the check says it skipped that).
# Called by ctest with -DBUILD_DIR -DWORK_DIR.
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
set(root "${WORK_DIR}/root")
set(prefix /usr/local)

execute_process(COMMAND ${CMAKE_COMMAND} -E env DESTDIR=${root}
                        ${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix ${prefix}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc}):\n${out}\n${err}")
endif()

set(binary "${root}${prefix}/bin/sshpool-demo")
set(example "${root}${prefix}/share/sshpool/sshpool-demo.example.json")
set(unit "${root}${prefix}/lib/systemd/system/sshpool-demo.service")
foreach(f "${binary}" "${example}" "${unit}")
  if(NOT EXISTS "${f}")
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()
execute_process(COMMAND "${binary}" --help RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the installed sshpool-demo --help failed (${rc})")
endif()

file(READ "${example}" text)
string(JSON users ERROR_VARIABLE json_error GET "${text}" users)
if(json_error)
  message(FATAL_ERROR "the example config is not valid JSON with users: ${json_error}")
endif()

file(READ "${unit}" text)
foreach(line "ExecStart=${prefix}/bin/sshpool-demo --config /etc/sshpool/sshpool-demo.json"
             "ExecReload=/bin/kill -HUP $MAINPID" "NoNewPrivileges=yes" "ProtectSystem=strict"
             "ProtectHome=yes" "PrivateTmp=yes" "DynamicUser=yes" "StateDirectory=sshpool")
  string(FIND "${text}" "${line}\n" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "the unit lacks the line '${line}'")
  endif()
endforeach()

find_program(SYSTEMD_ANALYZE systemd-analyze)
if(NOT SYSTEMD_ANALYZE)
  message(STATUS "systemd-analyze not found: the unit was not verified (skipped)")
  return()
endif()
# The unit as installed, but naming the binary where DESTDIR put it (systemd-analyze checks
# that ExecStart is executable); the rest is checked against this machine's systemd.
file(MAKE_DIRECTORY "${WORK_DIR}/verify")
string(REPLACE "ExecStart=${prefix}/bin/sshpool-demo" "ExecStart=${binary}" text "${text}")
file(WRITE "${WORK_DIR}/verify/sshpool-demo.service" "${text}")
execute_process(COMMAND ${SYSTEMD_ANALYZE} verify --man=no
                        "${WORK_DIR}/verify/sshpool-demo.service"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT "${out}${err}" STREQUAL "")
  message(FATAL_ERROR "systemd-analyze verify refused the unit (${rc}):\n${out}\n${err}")
endif()
message(STATUS "systemd-analyze verify accepted the unit")
