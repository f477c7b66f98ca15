# Installs the build tree into a temporary prefix, then configures and builds consumers as
# an outside project would (find_package(sshpool) + sshpool::sshpool):
#  - app/example, the example program, which is then run against a private sshd/backend;
#  - tests/consumer, the README's facade snippet compiled verbatim.
# Called by ctest with -DSOURCE_DIR -DBUILD_DIR -DWORK_DIR.
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

run(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${WORK_DIR}/prefix")
foreach(project app/example tests/consumer)
  string(REPLACE "/" "_" name "${project}")
  run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/${project}" -B "${WORK_DIR}/${name}"
      -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_BUILD_TYPE=Release)
  run(${CMAKE_COMMAND} --build "${WORK_DIR}/${name}" -j 2)
endforeach()
run(bash "${SOURCE_DIR}/app/run-example.sh" "${WORK_DIR}/app_example/sshpool-example"
    "${BUILD_DIR}/app/sshpool-backend" "${WORK_DIR}/run")
